//! Newline-delimited frames with a size limit. An oversize or non-UTF-8 line is reported and skipped,
//! and reading goes on with the next line: one bad message never ends a session. (tokio-util's
//! `FramedRead` ends the stream after the first decode error, which would.)

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// One line read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// A line longer than the limit (its length so far), skipped.
    TooLong(usize),
    /// A line that is not UTF-8, skipped.
    NotUtf8,
}

#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max,
            buf: Vec::new(),
        }
    }

    /// The next line without its `\n` (and `\r`), or `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let mut seen = 0usize;
        let mut too_long = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if seen == 0 {
                    return Ok(None);
                }
                break;
            }
            let (chunk, consumed, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            seen += chunk.len();
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong(seen)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(s) => Ok(Some(Line::Text(s))),
            Err(_) => Ok(Some(Line::NotUtf8)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn skips_oversize_and_invalid_lines_and_goes_on() {
        let input: Vec<u8> = [
            b"short\n".as_slice(),
            &[b'x'; 100],
            b"\nok\r\n",
            &[0xff, 0xfe],
            b"\nlast without newline",
        ]
        .concat();
        let mut r = LineReader::new(input.as_slice(), 10);
        assert_eq!(r.next().await.unwrap(), Some(Line::Text("short".into())));
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong(100)));
        assert_eq!(r.next().await.unwrap(), Some(Line::Text("ok".into())));
        assert_eq!(r.next().await.unwrap(), Some(Line::NotUtf8));
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong(20)));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn lines_split_across_reads() {
        let (mut w, rd) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            w.write_all(b"{\"a\":\"0123456789\"}\n{\"b\":1}\n")
                .await
                .unwrap();
        });
        let mut r = LineReader::new(rd, 1024);
        assert_eq!(
            r.next().await.unwrap(),
            Some(Line::Text("{\"a\":\"0123456789\"}".into()))
        );
        assert_eq!(
            r.next().await.unwrap(),
            Some(Line::Text("{\"b\":1}".into()))
        );
        writer.await.unwrap();
        assert_eq!(r.next().await.unwrap(), None);
    }
}
