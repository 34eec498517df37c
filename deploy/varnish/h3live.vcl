# Varnish edge for an h3live origin (Varnish 6.0 to 7.x, tested with 7.1).
#
# The edge caches what the origin says it may (see src/core/headers.rs):
# segments are `public, max-age=N` both while they grow and when finished,
# manifests `max-age=1`, errors and clocks `no-store`. Varnish streams a miss
# to every client that asked for the same URL while the origin is still
# writing it, so each segment costs the origin ONE request per edge, however
# many viewers the edge has.
#
# Backends: the origin's cleartext HTTP/1.1 listener (BACKEND) and a hot
# standby (STANDBY): a second origin fed by the same encoder relay
# (docs/relay.md), so it holds the same objects under the same names. While
# the origin's probe is good every fetch goes to it; when it fails, to the
# standby (a fallback director), and a fetch that cannot reach the origin is
# tried once more on the standby at once, before the probe notices. Without
# a standby, both name the one origin. scripts/edge.sh and the tests rewrite
# the lines marked BACKEND and STANDBY with sed; edit them by hand for a real
# deployment.
#
# Start (own work dir, no jail, 256 MB of memory storage):
#   varnishd -F -n /var/lib/h3live-edge -j none -a 127.0.0.1:6081 \
#     -f $PWD/deploy/varnish/h3live.vcl -s malloc,256m
# deploy/varnish/README.md explains each rule and what was measured.

vcl 4.1;

import std;
import directors;

# The probe decides which origin gets the fetches, and when grace applies:
# while an origin answers, nothing stale is served; while none does
# (restart), the last manifest is.
probe healthz {
    .url = "/healthz";
    .interval = 1s;
    .timeout = 500ms;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

backend origin {
    .host = "127.0.0.1";   # BACKEND host
    .port = "8080";        # BACKEND port
    .connect_timeout = 1s;
    # The origin holds a GET for a segment that is not uploaded yet until its
    # first byte arrives (--hold, 2 s by default): the first byte may take
    # that long. Beyond it the origin answers 404 anyway.
    .first_byte_timeout = 5s;
    # ffmpeg flushes a fragment every frame (33 ms) or every 200 ms; five
    # seconds without a byte means the encoder or the origin is gone. The
    # fetch then fails, and a failed fetch is never kept (see below).
    .between_bytes_timeout = 5s;
    .probe = healthz;
}

backend standby {
    .host = "127.0.0.1";   # STANDBY host
    .port = "8080";        # STANDBY port
    .connect_timeout = 1s;
    .first_byte_timeout = 5s;
    .between_bytes_timeout = 5s;
    .probe = healthz;
}

sub vcl_init {
    # The origin first, the standby while the origin's probe fails.
    new origins = directors.fallback();
    origins.add_backend(origin);
    origins.add_backend(standby);
}

sub vcl_recv {
    set req.backend_hint = origins.backend();
    # Ingest never passes the edge: the encoder pushes to the origin only.
    # A PUT/POST/DELETE here would otherwise be passed (builtin VCL) and
    # could overwrite or delete a live segment from any viewer's address.
    if (req.method == "PUT" || req.method == "POST" || req.method == "DELETE" || req.method == "PATCH") {
        return (synth(405, "Method Not Allowed"));
    }
    # CORS preflights are answered by the origin and never cached (they vary
    # by request headers and are cheap).
    if (req.method == "OPTIONS") {
        return (pass);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (synth(405, "Method Not Allowed"));
    }
    # The origin's operator pages are not for viewers.
    if (req.url ~ "^/(metrics|streams)(\?|$)") {
        return (synth(404, "Not Found"));
    }
    # /time is the players' clock (DASH UTCTiming): always the origin's, never
    # a cached copy. /healthz reports the origin through this edge.
    if (req.url ~ "^/(time|healthz)(\?|$)") {
        return (pass);
    }
    # Nothing a viewer sends changes a live object: drop what would make the
    # builtin VCL pass (cookies, credentials) so every viewer shares the cache.
    unset req.http.Cookie;
    unset req.http.Authorization;
    # A query string makes a new cache object and a new origin request per
    # distinct value: a viewer could defeat coalescing at will. So the edge
    # keeps only the parameters that every viewer of the same thing sends
    # alike, in a fixed order, and drops the rest:
    # - run=...: the player marks segment URLs with the encoder run
    #   (availabilityStartTime), so after an encoder restart the new run's
    #   segment 7 is never answered from the old run's cached segment 7;
    # - _HLS_msn, _HLS_part, _HLS_skip: LL-HLS blocking playlist reload (the
    #   origin answers when that part exists; all viewers waiting for the
    #   same part share one origin request).
    if (req.url ~ "^/live/") {
        set req.http.x-h3live-q = "";
        if (req.url ~ "[?&]run=[0-9A-Za-z:._%+-]+") {
            set req.http.x-h3live-q = req.http.x-h3live-q + "&" + regsub(req.url, "^.*[?&](run=[0-9A-Za-z:._%+-]+).*$", "\1");
        }
        if (req.url ~ "[?&]_HLS_msn=[0-9]+") {
            set req.http.x-h3live-q = req.http.x-h3live-q + "&" + regsub(req.url, "^.*[?&](_HLS_msn=[0-9]+).*$", "\1");
        }
        if (req.url ~ "[?&]_HLS_part=[0-9]+") {
            set req.http.x-h3live-q = req.http.x-h3live-q + "&" + regsub(req.url, "^.*[?&](_HLS_part=[0-9]+).*$", "\1");
        }
        if (req.url ~ "[?&]_HLS_skip=(YES|v2)") {
            set req.http.x-h3live-q = req.http.x-h3live-q + "&" + regsub(req.url, "^.*[?&](_HLS_skip=(YES|v2)).*$", "\1");
        }
        set req.url = regsub(req.url, "\?.*$", "");
        if (req.http.x-h3live-q != "") {
            set req.url = req.url + "?" + regsub(req.http.x-h3live-q, "^&", "");
        }
        unset req.http.x-h3live-q;
    }
    # Grace: while the origin is healthy, serve nothing stale (an expired
    # manifest is refetched, and concurrent requests wait for that one
    # fetch). While it is down, serve the last copy of whatever is still in
    # grace, so players keep their manifest during an origin restart.
    if (std.healthy(req.backend_hint)) {
        set req.grace = 0s;
    }
    # Init segments: the encoder sends each ONCE per run (ffmpeg never
    # re-sends them), so an origin that restarts has lost them and the
    # stream is broken until the encoder restarts. The edge keeps serving its
    # copy: an expired init segment is delivered at once while a background
    # fetch refreshes it, and a refresh that fails keeps the old copy (see
    # vcl_backend_response). After an encoder restart the new init segment
    # replaces it on the next refresh (within the origin's max-age).
    if (req.url ~ "^/live/[^/]+/[^/]*init[^/]*$") {
        set req.grace = 24h;
    }
    return (hash);
}

sub vcl_hash {
    # One object per path, whatever Host the viewer used (edge name, IP,
    # front-end proxy): the edge serves one origin.
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_fetch {
    # GET only: a HEAD miss becomes a GET (builtin behaviour), conditional
    # headers are Varnish's own business.
    # Origin-assisted prefetch (docs/edge.md): every origin fetch asks the
    # origin to name the next object (CDN-Origin-Assist-Prefetch-Path), so
    # the cached object carries it whichever client fetched it first, and
    # the front (h3live front) prefetches from its viewers' hits of media
    # segments too (init segments and manifests: see vcl_deliver). The
    # front's own prefetches arrive marked CDN-Origin-Assist-Prefetch-Request
    # and pass through as they are. None of these headers is in the cache
    # key (vcl_hash), so they never split the cache.
    set bereq.http.CDN-Origin-Assist-Prefetch-Enabled = "1";
    # A fetch that could not reach the origin (vcl_backend_error) is tried
    # again on the standby.
    if (bereq.retries > 0) {
        set bereq.backend = standby;
    }
    return (fetch);
}

sub vcl_backend_response {
    # Stream misses: clients get each chunk as the origin sends it instead of
    # waiting for the whole segment (2 s). Every request for the same URL
    # that arrived while the fetch was starting waits on this one fetch and
    # then reads the same growing object: request coalescing.
    set beresp.do_stream = true;

    # A background refresh (an init segment in grace) that fails keeps the
    # copy the edge has: stale-if-error.
    if (bereq.is_bgfetch && beresp.status >= 300) {
        return (abandon);
    }
    # 404: the origin answers it only after holding the request for --hold
    # (2 s) without the upload starting. It is kept for ONE second, for two
    # reasons. Every viewer that queued behind that request gets the 404 at
    # once; with ttl 0 Varnish wakes the queued requests one at a time and
    # each waits out its own 2 s hold (measured: 12 requests for a missing
    # segment answered after 2, 4, ... 24 s; viewers' fronts time out). And
    # it is not cached longer: a segment that does appear is served at most
    # one second later (a 404 that lived for the segments' max-age would
    # break the stream at this edge). No hit-for-miss marker either: that
    # would send every viewer of the next attempt to the origin separately.
    # A prefetch (the front asking ahead for the next segment) that found
    # nothing: not kept, so it costs players nothing. Players that queued on
    # it become an ordinary miss of their own, held at the origin as usual.
    if (beresp.status == 404 && bereq.http.CDN-Origin-Assist-Prefetch-Request == "1") {
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        set beresp.http.Cache-Control = "no-store";
        return (deliver);
    }
    if (beresp.status == 404) {
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        set beresp.http.Cache-Control = "no-store";
        return (deliver);
    }
    # 502 (an aborted upload), 503 and every other error: never cached, not
    # even as hit-for-miss. ttl 0 makes the marker expire at once, so the next
    # request for the URL is an ordinary miss that coalesces again. These
    # come back without a hold, so waking queued requests one by one is fast.
    if (beresp.status >= 300) {
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # The origin's own no-store (clocks, status pages) is obeyed the same way.
    if (bereq.uncacheable || beresp.http.Cache-Control ~ "(?i)(no-store|no-cache|private)" || beresp.http.Set-Cookie) {
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # Manifests change every segment: never more than one second old at the
    # edge, whatever the origin says. Their grace (used only while the
    # origin is down, see vcl_recv) covers an origin restart.
    if (bereq.url ~ "\.(mpd|m3u8)$") {
        if (beresp.ttl > 1s) {
            set beresp.ttl = 1s;
        }
        set beresp.grace = 30s;
        return (deliver);
    }
    # Segments and static files: the origin's max-age (the same while a
    # segment grows and once it is finished). A little grace so a player that
    # is behind can still fetch a recent segment while the origin restarts;
    # init segments much more (see vcl_recv).
    if (bereq.url ~ "^/live/[^/]+/[^/]*init[^/]*$") {
        set beresp.grace = 24h;
    } else {
        set beresp.grace = 10s;
    }
    # An aborted upload: the origin ends the response without the final
    # chunk (HTTP/1.1). Varnish then fails the fetch, drops the object from
    # the cache and cuts off every client streaming it, so a truncated
    # segment is never delivered later as if it were complete
    # (tests/edge.rs checks it).
    return (deliver);
}

sub vcl_backend_error {
    # Origin unreachable or timed out: once more on the standby (see
    # vcl_backend_fetch), which has the same objects. Its own failure is a
    # 503, never cached, readable by players on other origins (CORS) so they
    # see the status and retry.
    if (bereq.retries == 0) {
        return (retry);
    }
    set beresp.ttl = 0s;
    set beresp.grace = 0s;
    set beresp.uncacheable = true;
    set beresp.http.Cache-Control = "no-store";
    set beresp.http.Access-Control-Allow-Origin = "*";
    set beresp.http.Content-Type = "text/plain; charset=utf-8";
    set beresp.body = "" + beresp.status + " " + beresp.reason + " (edge: origin unavailable)" + {"
"};
    return (deliver);
}

sub vcl_synth {
    set resp.http.Cache-Control = "no-store";
    set resp.http.Access-Control-Allow-Origin = "*";
    if (resp.status == 405) {
        set resp.http.Allow = "GET, HEAD, OPTIONS";
    }
    set resp.http.Content-Type = "text/plain; charset=utf-8";
    set resp.body = "" + resp.status + " " + resp.reason + " (edge)" + {"
"};
    return (deliver);
}

sub vcl_deliver {
    # Hit or miss, for scripts/edge.sh and curious operators. A client that
    # joined a fetch in progress counts as a hit.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # The prefetch path of an init segment or a manifest is the live edge at
    # the moment the origin answered: only the response that filled the cache
    # carries it. An init segment stays cached for its max-age (and grace),
    # and a hit would send the front to a segment long gone (a prefetch held
    # at the origin, then 404). A media segment's path (N+1) does not age.
    if (obj.hits > 0 && (req.url ~ "\.(mpd|m3u8)(\?|$)" || req.url ~ "^/live/[^/]+/[^/?]*init[^/?]*(\?|$)")) {
        unset resp.http.CDN-Origin-Assist-Prefetch-Path;
    }
    return (deliver);
}
