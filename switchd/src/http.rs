//! HTTP/1.1 request framing for switchd's own small servers (the Docker
//! plugin socket, the metrics endpoint), with httparse.
//!
//! Strict, as RFC 9112 asks of a server that cannot tell where a request
//! ends otherwise: a body is exactly one `Content-Length` of digits. Two
//! `Content-Length`s, or any `Transfer-Encoding` (chunked bodies are not
//! read, so their chunks would be taken for another request), are refused
//! (`400`), as are malformed requests; one too large, `413`.

const MAX_HEADERS: usize = 32;

/// Why a request cannot be read: the HTTP status to answer before closing
/// the connection, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn bad(message: impl Into<String>) -> Self {
        HttpError { status: 400, message: message.into() }
    }
}

/// One request read from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// How many bytes of the buffer it took.
    pub len: usize,
}

/// The first request in `buf`, if it is all there (`None` while `buf`
/// holds only part of one); at most `max` bytes with its body.
pub fn parse_request(buf: &[u8], max: usize) -> Result<Option<Request>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError::bad(format!("bad HTTP request: {e}"))),
    };
    if request.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        return Err(HttpError::bad("Transfer-Encoding is not supported: send the body with a Content-Length"));
    }
    let mut lengths = request.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(_), Some(_)) => return Err(HttpError::bad("more than one Content-Length")),
        (Some(h), None) => std::str::from_utf8(h.value)
            .ok()
            .map(|v| v.trim_matches([' ', '\t']))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| HttpError::bad("bad Content-Length"))?,
    };
    let total = head.checked_add(length).filter(|t| *t <= max);
    let Some(total) = total else {
        return Err(HttpError { status: 413, message: format!("a body of {length} bytes; at most {max} in all") });
    };
    if buf.len() < total {
        return Ok(None);
    }
    let path = request.path.unwrap_or("/").to_owned();
    let method = request.method.unwrap_or("GET").to_owned();
    Ok(Some(Request { method, path, body: buf[head..total].to_vec(), len: total }))
}
