//! The real encoder for tests: Debian's ffmpeg pushing LL-DASH (the command
//! of REFERENCE.md §1 at 640x360 to spare the CPU) into a test origin.

use std::process::Stdio;

pub struct Encoder(tokio::process::Child);

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub fn ffmpeg_push(origin: std::net::SocketAddr, stream: &str) -> Encoder {
    ffmpeg_push_with(&format!("http://{origin}/live/{stream}/manifest.mpd"), origin, "tcp_nodelay=1")
}

pub fn ffmpeg_push_with(url: &str, origin: std::net::SocketAddr, http_opts: &str) -> Encoder {
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
    let drawtext = format!(
        "drawtext=fontfile={font}:text='%{{localtime\\:%T.%3N}}':fontsize=32:fontcolor=white:box=1:boxcolor=black:x=10:y=10"
    );
    let args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "warning",
        "-nostdin",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-vf",
        &drawtext,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-bf",
        "0",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-b:v",
        "1M",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "dash",
        "-ldash",
        "1",
        "-streaming",
        "1",
        "-frag_type",
        "every_frame",
        "-use_template",
        "1",
        "-use_timeline",
        "0",
        "-seg_duration",
        "2",
        "-window_size",
        "5",
        "-extra_window_size",
        "5",
        "-remove_at_exit",
        "1",
        "-format_options",
        "movflags=cmaf",
        "-write_prft",
        "1",
        "-target_latency",
        "1.5",
        "-utc_timing_url",
        &format!("http://{origin}/time"),
        "-method",
        "PUT",
        "-http_persistent",
        "1",
        "-ignore_io_errors",
        "1",
        "-http_opts",
        http_opts,
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let child = tokio::process::Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed (apt-get install ffmpeg); the README's test command installs it");
    Encoder(child)
}
