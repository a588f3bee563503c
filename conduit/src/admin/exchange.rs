//! One HTTP/1.1 request on a connection the caller opened (a unix socket, TCP, TLS): the
//! admin client's calls and the checkpoints sent to witnesses.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};

/// Sends `req` on `io` and reads the whole answer. The connection is driven here, beside
/// the exchange: no task outlives the call.
///
/// # Errors
/// The handshake, the request or the body failed.
pub(crate) async fn exchange<I>(
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let talk = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    };
    tokio::pin!(conn);
    tokio::pin!(talk);
    tokio::select! {
        r = &mut talk => r,
        c = &mut conn => {
            c?;
            talk.await
        }
    }
}
