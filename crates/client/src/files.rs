//! Files in and out of a sandbox over the data plane (`/upload`,
//! `/download`), the same endpoints the Python SDK's `write`/`read` use.

use bytes::Bytes;

use crate::{ClientError, SandboxHandle};

/// Percent-encode a path for a query string (RFC 3986 unreserved + `/`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A `multipart/form-data` body with one field `file`.
fn multipart(data: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("sandpit-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl SandboxHandle {
    /// Write `data` to `path` in the sandbox (parents are created).
    pub async fn upload(&self, path: &str, data: &[u8]) -> Result<(), ClientError> {
        let url = format!("{}/upload?path={}", self.dataplane_url, encode_path(path));
        let (content_type, body) = multipart(data);
        let (status, bytes) = self
            .client
            .http
            .send_raw(
                http::Method::POST,
                &url,
                self.client.api_key(),
                Some(&content_type),
                body,
            )
            .await?;
        if status >= 400 {
            return Err(ClientError::from_body(status, &bytes));
        }
        Ok(())
    }

    /// Read the file at `path` in the sandbox.
    pub async fn download(&self, path: &str) -> Result<Bytes, ClientError> {
        self.download_with(path, |_| {}).await
    }

    /// `download`, reporting the size of each chunk as it arrives (for a
    /// progress display).
    pub async fn download_with(
        &self,
        path: &str,
        on_chunk: impl FnMut(usize),
    ) -> Result<Bytes, ClientError> {
        let url = format!("{}/download?path={}", self.dataplane_url, encode_path(path));
        let (status, bytes) = self
            .client
            .http
            .send_raw_with(
                http::Method::GET,
                &url,
                self.client.api_key(),
                None,
                Vec::new(),
                on_chunk,
            )
            .await?;
        if status >= 400 {
            return Err(ClientError::from_body(status, &bytes));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_query_safe() {
        assert_eq!(
            encode_path("/home/user/a b&c.txt"),
            "/home/user/a%20b%26c.txt"
        );
        assert_eq!(encode_path("/tmp/é"), "/tmp/%C3%A9");
    }

    #[test]
    fn multipart_wraps_the_bytes_in_one_file_field() {
        let (content_type, body) = multipart(b"\x00hello\xff");
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"file\""));
        assert!(body.windows(7).any(|w| w == b"\x00hello\xff"));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }
}
