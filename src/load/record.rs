//! `h3live load record`: stands in for the origin's ingest listener and writes
//! everything an encoder pushes (PUT/POST bodies piece by piece, DELETEs)
//! into a capture directory with arrival times. Point ffmpeg's output URL at
//! it instead of the origin; replay the capture later with `load replay`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::capture::CaptureWriter;

/// Shared by every connection of the recorder.
struct Recorder {
    /// The capture being written. A `std` mutex: each critical section is a
    /// buffered write, never held across `.await`.
    writer: Mutex<CaptureWriter>,
    /// Next request id.
    next_req: AtomicU64,
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut CaptureWriter) -> Result<T>) -> Result<T> {
        f(&mut self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
        let method = req.method().clone();
        let file = req.uri().path().rsplit('/').next().unwrap_or_default().to_string();
        if !matches!(method, http::Method::PUT | http::Method::POST | http::Method::DELETE) {
            let mut r = Response::new(Full::new(Bytes::from_static(b"recorder: only PUT, POST and DELETE\n")));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            return Ok(r);
        }
        let id = self.next_req.fetch_add(1, Ordering::Relaxed);
        self.with(|w| w.start(id, SystemTime::now(), method.as_str(), &file))?;
        let mut body = req.into_body();
        let mut bytes = 0u64;
        while let Some(piece) = crate::frames::next_data(&mut body).await {
            match piece {
                Ok(data) => {
                    bytes += data.len() as u64;
                    self.with(|w| w.data(id, SystemTime::now(), &data))?;
                }
                Err(e) => {
                    warn!(file, error = %e, "recorded request cut off");
                    self.with(|w| w.flush())?;
                    return Ok(Response::new(Full::new(Bytes::new())));
                }
            }
        }
        self.with(|w| {
            w.end(id, SystemTime::now())?;
            w.flush()
        })?;
        debug!(%method, file, bytes, "recorded");
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = if method == http::Method::DELETE { StatusCode::NO_CONTENT } else { StatusCode::CREATED };
        Ok(r)
    }
}

/// Record pushes arriving on `listen` into `out` until `stop` is cancelled.
pub async fn run(listen: SocketAddr, out: &Path, stop: CancellationToken) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    serve(listener, out, stop).await
}

/// [`run`] on an already-bound listener.
pub async fn serve(listener: tokio::net::TcpListener, out: &Path, stop: CancellationToken) -> Result<()> {
    info!(addr = %listener.local_addr()?, out = %out.display(), "recording pushes");
    let recorder = Arc::new(Recorder {
        writer: Mutex::new(CaptureWriter::create(out, SystemTime::now())?),
        next_req: AtomicU64::new(0),
    });
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => r?,
            _ = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let rec = recorder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let rec = rec.clone();
                async move {
                    Ok::<_, Infallible>(rec.handle(req).await.unwrap_or_else(|e| {
                        warn!(error = %format!("{e:#}"), "recording failed");
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        r
                    }))
                }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await
            {
                debug!(%remote, error = %e, "recorder connection ended");
            }
        });
    }
    recorder.with(|w| w.flush())?;
    info!(out = %out.display(), "capture written");
    Ok(())
}
