#!/usr/bin/env python3
"""Check an ffmpeg command line against ffmpeg's own option lists, without running it.

Usage: scripts/ffmpeg-check.py [--quiet] -- ffmpeg ARG...
       scripts/ffmpeg-check.py --file FILE
         FILE: one command a line, shell-quoted (as `encoder.sh --dry-run`
         prints it); a line "# LABEL" names the next command. One report line
         per command: "LABEL: ok (...)" or "LABEL: N problems (...)" followed
         by the problems, indented. ffmpeg is asked once for all of them.

Walks the command the way ffmpeg's command line parser does (options apply to
the next -i input, or to the output URL at the end) and checks that:
  - every option exists where it is used: a command-line option of ffmpeg
    (`ffmpeg -h full`), a generic format or codec option (AVFormatContext,
    AVCodecContext), a private option of the input's demuxer (-f before -i,
    `ffmpeg -h demuxer=X`), of the output's muxer, or of the output's
    encoders (-c:v / -c:a, `ffmpeg -h encoder=X`); an option with a stream
    specifier (-b:v, -preset:v:0) must exist for an encoder of that kind;
  - a value given by name is one of the option's named constants (-tune ull,
    -rc cbr, -flags +low_delay, -profile:v high), a boolean is a boolean;
  - -pix_fmt is one of the video encoder's supported pixel formats;
  - every filter named in -filter_complex / -vf exists (`ffmpeg -filters`),
    and the device type of -init_hw_device is a hardware method of this
    ffmpeg (`ffmpeg -hwaccels`).
An encoder or demuxer this ffmpeg lacks (h264_videotoolbox and avfoundation
exist only in macOS builds) is checked against its option table in ffmpeg
5.1's source, kept below; the report says so.
Exit status 0 when everything checks, 1 with one line per problem.
"""
import re
import shlex
import subprocess
import sys

# Option tables of ffmpeg 5.1 components that Linux builds do not contain,
# in the shape parse_avoptions() returns (docs/sources.md says where they come
# from). Types: b = boolean, n = number or named constant, s = any string.
KNOWN_ELSEWHERE = {
    "encoder=h264_videotoolbox": {
        "pix_fmts": {"videotoolbox_vld", "nv12", "yuv420p"},
        "options": {
            "allow_sw": ("b", set()),
            "require_sw": ("b", set()),
            "realtime": ("b", set()),
            "frames_before": ("b", set()),
            "frames_after": ("b", set()),
            "prio_speed": ("b", set()),
            "profile": ("n", {"baseline", "main", "high", "extended"}),
            "level": ("n", {"1.3", "3.0", "3.1", "3.2", "4.0", "4.1", "4.2", "5.0", "5.1", "5.2"}),
            "coder": ("n", {"cavlc", "vlc", "cabac", "ac"}),
            "a53cc": ("b", set()),
        },
    },
    "demuxer=avfoundation": {
        "pix_fmts": set(),
        "options": {
            "list_devices": ("b", set()),
            "video_device_index": ("n", set()),
            "audio_device_index": ("n", set()),
            "pixel_format": ("s", set()),
            "framerate": ("s", set()),
            "video_size": ("s", set()),
            "capture_cursor": ("b", set()),
            "capture_mouse_clicks": ("b", set()),
            "capture_raw_data": ("b", set()),
            "drop_late_frames": ("b", set()),
        },
    },
}

# Command-line booleans whose help shows an argument name (the only one in 5.1).
BOOL_WITH_ARGNAME = {"hide_banner"}

NUMERIC_TYPES = {"int", "int64", "uint64", "flags", "float", "double", "rational", "boolean"}


def ffmpeg(*args):
    r = subprocess.run(["ffmpeg", "-hide_banner", *args], capture_output=True, text=True)
    return r.stdout + r.stderr


def parse_avoptions(lines):
    """Option lines of `-h` output ("  -name <type> flags help", constants
    indented further) -> {name: (kind, constants)}."""
    opts = {}
    last = None
    for line in lines:
        m = re.match(r"^  -(\S+)\s+<(\w+)>", line)
        if m:
            typ = m.group(2)
            kind = "b" if typ == "boolean" else ("n" if typ in NUMERIC_TYPES else "s")
            last = m.group(1)
            opts.setdefault(last, (kind, set()))
            continue
        m = re.match(r"^     (\S+)\s", line)
        if m and last:
            opts[last][1].add(m.group(1))
        elif not line.startswith(" "):
            last = None
    return opts


def sections(text):
    """`-h full` split at its "X AVOptions:" / "X options:" headers -> [(header, lines)]."""
    out, header, cur = [], None, []
    for line in text.splitlines():
        if re.match(r"^\S.*(AVOptions|options.*):$", line):
            out.append((header, cur))
            header, cur = line[:-1], []
        else:
            cur.append(line)
    out.append((header, cur))
    return out


class Ffmpeg:
    """What this ffmpeg knows, asked once per component."""

    def __init__(self):
        full = ffmpeg("-h", "full")
        self.cli = {}  # name -> takes a value
        self.generic = {}  # header -> options
        for header, lines in sections(full):
            if header and header.endswith("AVOptions"):
                if header in ("AVCodecContext AVOptions", "AVFormatContext AVOptions"):
                    self.generic[header] = parse_avoptions(lines)
                continue
            for line in lines:
                m = re.match(r"^-(\S+)(?: (\S.*?))?(?:\s{2,}|$)", line)
                if m and not line.startswith("- "):
                    name, argname = m.group(1), m.group(2)
                    # Boolean flags print their own name as the argument name (-hide_banner).
                    self.cli[name] = bool(argname) and name not in BOOL_WITH_ARGNAME
        self.codec = self.generic.get("AVCodecContext AVOptions", {})
        self.format = self.generic.get("AVFormatContext AVOptions", {})
        self.filters = set()
        for line in ffmpeg("-filters").splitlines():
            m = re.match(r"^ [.TSC|]{3} (\S+)\s", line)
            if m:
                self.filters.add(m.group(1))
        self.hwaccels = {line.strip() for line in ffmpeg("-hwaccels").splitlines()[1:] if line.strip()}
        self.version = (ffmpeg("-version").split() + ["?", "?", "?"])[2]
        self.cache = {}

    def component(self, what):
        """`-h encoder=X` / `-h demuxer=X` / `-h muxer=X` -> {"options", "pix_fmts", "from"} or None."""
        if what in self.cache:
            return self.cache[what]
        text = ffmpeg("-h", what)
        if "AVOptions" not in text and "Supported pixel formats" not in text and not re.match(
            r"^(Encoder|Decoder|Demuxer|Muxer) ", text
        ):
            found = KNOWN_ELSEWHERE.get(what)
            if found:
                found = dict(found, **{"from": " (ffmpeg 5.1's table: not in this build)"})
            self.cache[what] = found
            return found
        # An option table per section ("X AVOptions:"); the first is the component's own.
        opts = {}
        for header, lines in sections(text):
            if header and header.endswith("AVOptions"):
                for k, v in parse_avoptions(lines).items():
                    opts.setdefault(k, v)
        pix = set()
        m = re.search(r"Supported pixel formats: (.*)", text)
        if m:
            pix = set(m.group(1).split())
        found = {"options": opts, "pix_fmts": pix, "from": ""}
        self.cache[what] = found
        return found


def value_problem(name, kind, constants, value):
    if kind == "b":
        return None if value.lower() in ("0", "1", "true", "false") else f"-{name} {value}: not a boolean"
    if kind != "n" or not constants:
        return None
    if re.fullmatch(r"[-+]?[0-9.]+[kKMG]?", value):
        return None
    words = [w for w in re.split(r"[+-]", value) if w]
    bad = [w for w in words if w not in constants]
    if bad:
        return f"-{name} {value}: {', '.join(bad)} is not one of {sorted(constants)}"
    return None


def filter_names(graph):
    """Filter names in a filtergraph string (labels, quotes and escapes honoured)."""
    parts, cur, quote, esc = [], "", False, False
    for ch in graph:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == "'":
            quote = not quote
            cur += ch
        elif ch in ",;" and not quote:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    names = []
    for p in parts:
        p = re.sub(r"^\s*(\[[^\]]*\]\s*)*", "", p)
        m = re.match(r"([A-Za-z0-9_]+)", p)
        if m:
            names.append(m.group(1))
    return names


def check(args, ff):
    problems, checked, sources = [], 0, {}
    if not args or args[0].rsplit("/", 1)[-1] != "ffmpeg":
        return ["the command does not start with ffmpeg"], 0, sources
    pending = []  # (name, spec, value) for the next input or the output
    i = 1
    files = []
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1:
            full = a[1:]
            name, _, spec = full.partition(":")
            if name == "i":
                files.append(("input", args[i + 1] if i + 1 < len(args) else "", pending))
                pending, i = [], i + 2
                continue
            if name not in ff.cli and name.startswith("no") and ff.cli.get(name[2:]) is False:
                name = name[2:]  # -nostats, -nostdin: a boolean's negation
            takes = ff.cli.get(name, True)  # an AVOption always takes a value
            value = args[i + 1] if takes and i + 1 < len(args) else None
            pending.append((name, spec, value))
            i += 2 if takes else 1
        else:
            files.append(("output", a, pending))
            pending, i = [], i + 1
    if pending:
        problems.append(f"options after the last file: {' '.join('-' + n for n, _, _ in pending)}")

    def comp(what):
        c = ff.component(what)
        if c is None:
            problems.append(f"{what.replace('=', ' ')}: unknown to this ffmpeg and to the 5.1 tables here")
        else:
            sources[what] = c["from"]
        return c

    for role, url, opts in files:
        fmt = next((v for n, s, v in opts if n == "f"), None)
        own = comp(f"{'demuxer' if role == 'input' else 'muxer'}={fmt}") if fmt else None
        encoders = {}
        if role == "output":
            for n, s, v in opts:
                if n in ("c", "codec", "vcodec", "acodec") and v != "copy":
                    kind = "v" if n == "vcodec" else "a" if n == "acodec" else (s[:1] or "*")
                    encoders[kind] = (v, comp(f"encoder={v}"))
        for n, s, v in opts:
            checked += 1
            where = f"{role} {url!r}"
            if n in ff.cli and n not in ff.codec and n not in ff.format:
                if n == "pix_fmt" and "v" in encoders and encoders["v"][1]:
                    pix = encoders["v"][1]["pix_fmts"]
                    if pix and v not in pix:
                        problems.append(f"-pix_fmt {v}: {encoders['v'][0]} takes {' '.join(sorted(pix))}")
                if n in ("filter_complex", "vf", "af", "filter"):
                    for f in filter_names(v or ""):
                        if f not in ff.filters:
                            problems.append(f"filter {f} (in -{n}) is not a filter of this ffmpeg")
                if n == "init_hw_device" and v:
                    typ = re.split(r"[=:]", v)[0]
                    if typ not in ff.hwaccels:
                        problems.append(f"-init_hw_device {v}: {typ} is not a hardware method of this ffmpeg")
                continue
            # Candidates in precedence order: the component's own options first.
            tables = []
            if role == "input":
                tables.append(own["options"] if own else {})
            else:
                kinds = [s[:1]] if s[:1] in ("v", "a") else list(encoders)
                for k in kinds:
                    enc = encoders.get(k) or encoders.get("*")
                    if enc and enc[1]:
                        tables.append(enc[1]["options"])
                if own:
                    tables.append(own["options"])
            tables += [ff.format, ff.codec]
            found = next((t[n] for t in tables if n in t), None)
            if found is None:
                problems.append(f"-{n}{':' + s if s else ''} ({where}): no such option"
                                + (f" for {', '.join(e[0] for e in encoders.values())}" if encoders else ""))
                continue
            if v is not None:
                p = value_problem(n, found[0], found[1], v)
                if p:
                    problems.append(f"{p} ({where})")
    return problems, checked, sources


def report(label, cmd, ff):
    problems, checked, sources = check(cmd, ff)
    used = ", ".join(f"{k.split('=')[1]}{v}" for k, v in sources.items())
    head = "ok" if not problems else f"{len(problems)} problems"
    lines = [f"{label}: {head} ({checked} options checked against ffmpeg {ff.version}: {used})"]
    lines += [f"    {p}" for p in problems]
    return problems, lines


def main():
    argv = sys.argv[1:]
    quiet = "--quiet" in argv
    ff = None
    if "--file" in argv:
        path = argv[argv.index("--file") + 1]
        text = sys.stdin.read() if path == "-" else open(path).read()
        ff, label, bad, n = Ffmpeg(), None, 0, 0
        for line in text.splitlines():
            if line.startswith("#"):
                label = line[1:].strip()
            elif line.strip():
                n += 1
                problems, lines = report(label or f"command {n}", shlex.split(line), ff)
                bad += bool(problems)
                print("\n".join(lines))
                label = None
        return 1 if bad else 0
    if "--" not in argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ff = Ffmpeg()
    problems, lines = report("ffmpeg-check", argv[argv.index("--") + 1:], ff)
    if problems or not quiet:
        print("\n".join(lines))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
