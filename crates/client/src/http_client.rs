//! A pooled HTTP/1.1 client (hyper) for the control API.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::ClientError;

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Send a request and read the whole response: (status, body).
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        api_key: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let content_type = body.as_ref().map(|_| "application/json");
        self.send_raw(method, url, api_key, content_type, body.unwrap_or_default())
            .await
    }

    /// Send `body` with the given content type; read the whole response.
    pub async fn send_raw(
        &self,
        method: http::Method,
        url: &str,
        api_key: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), ClientError> {
        self.send_raw_with(method, url, api_key, content_type, body, |_| {})
            .await
    }

    /// `send_raw`, reporting the size of each body chunk as it arrives.
    pub async fn send_raw_with(
        &self,
        method: http::Method,
        url: &str,
        api_key: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        mut on_chunk: impl FnMut(usize),
    ) -> Result<(u16, Bytes), ClientError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-api-key", api_key);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(ClientError::transport)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut collected = BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(ClientError::transport)?.into_data() {
                on_chunk(data.len());
                collected.extend_from_slice(&data);
            }
        }
        Ok((status, collected.freeze()))
    }
}
