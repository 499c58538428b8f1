//! The body of the one request a plain-HTTP connection to the egress proxy
//! carries, as its head frames it (RFC 9112, section 6): relayed to the
//! origin server and nothing after it, so a request pipelined behind the
//! checked one never reaches the server unchecked, whatever host it names.

use super::refusal::Refusal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest chunk-size or trailer line of a chunked body.
const LINE_MAX_BYTES: usize = 4096;

/// How a request's body is delimited.
#[derive(Debug, PartialEq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// The body's framing from the request's headers; refused where they
/// disagree (both lengths, or lengths that differ: a request a server
/// could read another way) or name a coding the proxy cannot delimit.
pub(super) fn framing(headers: &[httparse::Header]) -> Result<Framing, Refusal> {
    // Each header of the name's values, as a list: `a, b` is two.
    let list = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| {
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|v| v.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let codings: Vec<String> = list("transfer-encoding")
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let lengths = list("content-length");
    match (codings.last(), lengths.first()) {
        (Some(_), Some(_)) => Err(Refusal::new(
            400,
            "a request with both Transfer-Encoding and Content-Length",
        )),
        (Some(last), None) if last == "chunked" => Ok(Framing::Chunked),
        (Some(_), None) => Err(Refusal::new(
            501,
            "a request body coded other than chunked last",
        )),
        (None, None) => Ok(Framing::Empty),
        (None, Some(first)) => {
            let length = first
                .parse::<u64>()
                .ok()
                .filter(|_| first.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Refusal::new(400, "the Content-Length is not a number"))?;
            if lengths.iter().any(|l| l != first) {
                return Err(Refusal::new(400, "Content-Length values that differ"));
            }
            Ok(match length {
                0 => Framing::Empty,
                n => Framing::Length(n),
            })
        }
    }
}

/// Relays the body `framing` delimits (its first bytes in `already`, the
/// rest from `client`) to `upstream`, and no byte after it; how many bytes
/// were relayed.
pub(super) async fn relay<R, W>(
    already: &[u8],
    client: &mut R,
    upstream: &mut W,
    framing: &Framing,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut body = Body {
        buf: already.to_vec(),
        at: 0,
        client,
        upstream,
        relayed: 0,
    };
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => body.copy(*n).await?,
        Framing::Chunked => loop {
            let line = body.line().await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailers, up to the empty line.
                while body.line().await? != b"\r\n" {}
                break;
            }
            body.copy(size).await?;
            if body.line().await? != b"\r\n" {
                return Err(invalid("a chunk longer than its size"));
            }
        },
    }
    body.upstream.flush().await?;
    Ok(body.relayed)
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned())
}

/// The size a chunk-size line gives (hex digits, then extensions after a
/// `;`).
fn chunk_size(line: &[u8]) -> std::io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| invalid("a chunk size that is not text"))?;
    let digits = text
        .trim_end_matches("\r\n")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("a chunk size that is not a hex number"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| invalid("a chunk size that is not a hex number"))
}

/// The body as it is read: what came with the head, then the client.
struct Body<'a, R, W> {
    buf: Vec<u8>,
    at: usize,
    client: &'a mut R,
    upstream: &'a mut W,
    relayed: u64,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Body<'_, R, W> {
    /// What is read and not yet relayed, reading more when there is none.
    async fn available(&mut self) -> std::io::Result<&[u8]> {
        if self.at == self.buf.len() {
            self.buf.resize(16 * 1024, 0);
            let n = self.client.read(&mut self.buf).await?;
            self.buf.truncate(n);
            self.at = 0;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(&self.buf[self.at..])
    }

    async fn send(&mut self, n: usize) -> std::io::Result<()> {
        self.upstream
            .write_all(&self.buf[self.at..self.at + n])
            .await?;
        self.at += n;
        self.relayed += n as u64;
        Ok(())
    }

    /// Relays exactly `n` bytes.
    async fn copy(&mut self, mut n: u64) -> std::io::Result<()> {
        while n > 0 {
            let have = self.available().await?.len();
            let take = have.min(usize::try_from(n).unwrap_or(usize::MAX));
            self.send(take).await?;
            n -= take as u64;
        }
        Ok(())
    }

    /// Relays a line, through its `\r\n`, and returns it.
    async fn line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let have = self.available().await?;
            let (take, done) = match have.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (have.len(), false),
            };
            if line.len() + take > LINE_MAX_BYTES {
                return Err(invalid("a chunk-size or trailer line too long"));
            }
            line.extend_from_slice(&have[..take]);
            self.send(take).await?;
            if done {
                return Ok(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(headers: &[(&str, &str)]) -> Result<Framing, u16> {
        let headers: Vec<httparse::Header> = headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        framing(&headers).map_err(|r| r.status)
    }

    #[test]
    fn bodies_are_framed_as_their_headers_say_or_refused() {
        assert_eq!(framing_of(&[]), Ok(Framing::Empty));
        assert_eq!(framing_of(&[("Content-Length", "0")]), Ok(Framing::Empty));
        assert_eq!(
            framing_of(&[("content-length", "12"), ("Content-Length", "12")]),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing_of(&[("Transfer-Encoding", "gzip, Chunked")]),
            Ok(Framing::Chunked)
        );
        for (bad, status) in [
            (
                vec![("Content-Length", "12"), ("Content-Length", "13")],
                400,
            ),
            (vec![("Content-Length", "12, 13")], 400),
            (vec![("Content-Length", "+12")], 400),
            (vec![("Content-Length", "")], 400),
            (
                vec![("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
                400,
            ),
            (vec![("Transfer-Encoding", "chunked, gzip")], 501),
        ] {
            assert_eq!(framing_of(&bad), Err(status), "{bad:?}");
        }
    }

    /// What reaches the origin server of a body and whatever follows it.
    async fn relayed(already: &[u8], later: &[u8], framing: Framing) -> std::io::Result<Vec<u8>> {
        let (mut client, mut proxy_side) = tokio::io::duplex(1 << 16);
        client.write_all(later).await?;
        drop(client);
        let mut upstream = Vec::new();
        let n = relay(already, &mut proxy_side, &mut upstream, &framing).await?;
        assert_eq!(n, upstream.len() as u64);
        Ok(upstream)
    }

    #[tokio::test]
    async fn only_the_body_is_relayed_never_a_request_behind_it() {
        let next = b"GET http://elsewhere.example/ HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n";
        let later = [b"lo".as_slice(), next].concat();
        let sent = relayed(b"hel", &later, Framing::Length(5)).await;
        assert_eq!(sent.unwrap(), b"hello");
        let sent = relayed(next, b"", Framing::Empty).await;
        assert_eq!(sent.unwrap(), b"");
        let chunked = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n";
        let later = [&chunked[7..], next.as_slice()].concat();
        let sent = relayed(&chunked[..7], &later, Framing::Chunked).await;
        assert_eq!(sent.unwrap(), chunked);
        // Cut short, or framed wrongly: an error, and nothing past it.
        assert!(relayed(b"hel", b"", Framing::Length(5)).await.is_err());
        for bad in [
            b"4\r\nWikiX\r\n0\r\n\r\n".as_slice(),
            b"zz\r\n",
            b"10000000000000000\r\n",
        ] {
            assert!(
                relayed(bad, b"", Framing::Chunked).await.is_err(),
                "{bad:?}"
            );
        }
        let long = [b"1;".as_slice(), &[b'x'; 5000]].concat();
        assert!(relayed(&long, b"", Framing::Chunked).await.is_err());
    }
}
