//! Reading an `http_body::Body` (hyper's `Incoming` on the server, in the
//! client and in the capture recorder) as a sequence of data pieces, as they
//! arrive: one loop, written once.

use bytes::Bytes;
use http_body_util::BodyExt as _;

/// The next non-empty data frame of `body`: `None` at its end, `Some(Err)` if
/// it broke. Empty data frames and trailers are skipped. Cancel safe (a
/// frame is only taken from the body when it is returned).
pub async fn next_data<B>(body: &mut B) -> Option<Result<Bytes, B::Error>>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    loop {
        match body.frame().await? {
            Err(e) => return Some(Err(e)),
            Ok(frame) => match frame.into_data() {
                Ok(data) if !data.is_empty() => return Some(Ok(data)),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::StreamBody;

    #[tokio::test]
    async fn skips_empty_frames_and_trailers() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::trailers(http::HeaderMap::new())),
            Ok(Frame::data(Bytes::from_static(b"b"))),
            Err(std::io::Error::other("cut")),
        ];
        let mut body = StreamBody::new(futures_util::stream::iter(frames));
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "a");
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "b");
        assert!(next_data(&mut body).await.unwrap().is_err());
        assert!(next_data(&mut body).await.is_none());
    }
}
