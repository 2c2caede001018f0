//! A pooled HTTP/1.1 client (hyper) for the control API.

use bytes::Bytes;
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
        let mut builder = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-api-key", api_key);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(ClientError::transport)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::transport)?
            .to_bytes();
        Ok((status, bytes))
    }
}
