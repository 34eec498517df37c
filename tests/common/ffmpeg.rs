//! The real encoder for tests: `scripts/encoder.sh`, the project's one ffmpeg
//! command (timecoded test pattern + tone, LL-DASH pushed by chunked PUT), at
//! 640x360 1 Mbit/s to spare the CPU. `--exec` makes the child ffmpeg itself,
//! so dropping the [`Encoder`] kills ffmpeg (no supervisor left behind).

use std::path::Path;
use std::process::Stdio;

/// A running ffmpeg, killed when dropped.
pub struct Encoder(tokio::process::Child);

impl Encoder {
    /// Kill ffmpeg (SIGKILL, as `kill -9`) and wait until it has exited.
    pub async fn kill(mut self) {
        self.0.kill().await.expect("killing ffmpeg");
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// ffmpeg pushing `stream` to the origin's ingest listener at `origin`.
pub fn ffmpeg_push(origin: std::net::SocketAddr, stream: &str) -> Encoder {
    ffmpeg_push_to(&format!("http://{origin}"), stream)
}

/// ffmpeg pushing `stream` to the origin base URL `base`, e.g.
/// `http://user:TOKEN@127.0.0.1:PORT` for an origin with `--ingest-token`.
pub fn ffmpeg_push_to(base: &str, stream: &str) -> Encoder {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/encoder.sh");
    let child = tokio::process::Command::new(script)
        .args(["--exec", "--origin", base, "--stream", stream])
        .args(["--size", "640x360", "--bitrate", "1M", "--target-latency", "1.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("scripts/encoder.sh must run (bash, and ffmpeg: apt-get install ffmpeg; the README's test command installs it)");
    Encoder(child)
}
