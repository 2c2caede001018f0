//! The API description: `GET /openapi.json`, an OpenAPI 3.1 document of
//! every route the server registers.
//!
//! Schemas come from the wire types (`#[derive(ToSchema)]` on
//! `sandpit_api` and `crate::opensandbox::model`); the few bodies that are
//! built as JSON in their handlers are described in [`shapes`]. Paths are
//! listed in [`routes`], one line per route, so that describing a route
//! never means editing its handler. `tests` reads the route registrations
//! of `crates/server/src` and fails when a route and the document disagree
//! (a route without a description, or a description without a route).
//!
//! The document is public (no key), like `/healthz`: it describes the API,
//! not any tenant's data.

mod routes;
mod shapes;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder, Schema,
    Type,
};
use utoipa::OpenApi;

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sandpit",
        description = "Self-hosted sandboxes: the LangSmith-compatible sandbox API \
            (`/api/v2/sandboxes`, also at `/v2/sandboxes`), the OpenSandbox lifecycle and \
            execd APIs (`/v1/...`), the admin API (`/api/v1/admin`), workspace secrets, the \
            data plane and the operator endpoints. Errors of Sandpit's own routes are \
            `ErrorBody`; OpenSandbox routes answer `OsError`."
    ),
    components(schemas(
        sandpit_api::ErrorBody,
        sandpit_api::ErrorDetail,
        sandpit_api::SandboxStatus,
        sandpit_api::sandbox::RunConfig,
        sandpit_api::CreateSandboxRequest,
        sandpit_api::UpdateSandboxRequest,
        sandpit_api::SandboxResponse,
        sandpit_api::SandboxListResponse,
        sandpit_api::StatusResponse,
        sandpit_api::admin::TenantResponse,
        sandpit_api::admin::TenantListResponse,
        sandpit_api::admin::CreateTenantRequest,
        sandpit_api::admin::UpdateTenantRequest,
        sandpit_api::admin::CreateKeyRequest,
        sandpit_api::admin::KeyResponse,
        sandpit_api::admin::CreatedKeyResponse,
        sandpit_api::admin::KeyListResponse,
        sandpit_api::pools::PoolResponse,
        sandpit_api::pools::PoolListResponse,
        sandpit_api::pools::CreatePoolRequest,
        sandpit_api::pools::UpdatePoolRequest,
        crate::opensandbox::model::ImageSpec,
        crate::opensandbox::model::CreateRequest,
        crate::opensandbox::model::RenewRequest,
        crate::opensandbox::model::RenewResponse,
        crate::opensandbox::model::StatusView,
        crate::opensandbox::model::ImageView,
        crate::opensandbox::model::SandboxView,
        crate::opensandbox::model::Pagination,
        crate::opensandbox::model::ListView,
    ))
)]
struct Derived;

/// The whole document.
pub fn document() -> Document {
    let mut doc = Derived::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in shapes::all() {
        components.schemas.insert(name.to_owned(), schema);
    }
    for (name, header, description) in SECURITY_SCHEMES {
        components.add_security_scheme(
            *name,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                *header,
                *description,
            ))),
        );
    }
    for route in routes::all() {
        doc.paths
            .add_path_operation(route.path.as_str(), route.methods, route.operation);
    }
    doc
}

/// `GET /openapi.json`: built once, then served from memory.
pub async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

const SECURITY_SCHEMES: &[(&str, &str, &str)] = &[
    (
        "ApiKey",
        "X-Api-Key",
        "A Sandpit API key (`sandpit keys create`); it acts for its tenant.",
    ),
    (
        "TenantId",
        "X-Tenant-Id",
        "With an admin key: act for this tenant. Any other key may only name its own tenant.",
    ),
    (
        "OpenSandboxApiKey",
        "OPEN-SANDBOX-API-KEY",
        "A Sandpit API key, as OpenSandbox clients send it.",
    ),
    (
        "SandboxToken",
        "X-Sandbox-Token",
        "The token of an execd endpoint (`GET /v1/sandboxes/{id}/endpoints/44772`): \
         that one sandbox, until it expires.",
    ),
    (
        "ClusterToken",
        "X-Sandpit-Cluster-Token",
        "Replicas only: the token derived from the cluster's shared secret.",
    ),
];

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// Nobody needs a key (probes, the document, the console's files, or a
    /// secret carried in the path or query).
    Public,
    /// An API key of the tenant (an admin key may name another tenant).
    Key,
    /// An admin key.
    Admin,
    /// OpenSandbox lifecycle: its header or Sandpit's.
    OpenSandbox,
    /// OpenSandbox execd: an endpoint token or an API key of the tenant.
    Execd,
    /// Replica-to-replica calls.
    Cluster,
}

impl Auth {
    fn requirements(self) -> Vec<SecurityRequirement> {
        let one = |name: &str| SecurityRequirement::new(name, Vec::<String>::new());
        match self {
            Auth::Public => Vec::new(),
            Auth::Key => vec![
                one("ApiKey"),
                one("ApiKey").add("TenantId", Vec::<String>::new()),
            ],
            Auth::Admin => vec![one("ApiKey")],
            Auth::OpenSandbox => vec![one("OpenSandboxApiKey"), one("ApiKey")],
            Auth::Execd => vec![one("SandboxToken"), one("OpenSandboxApiKey"), one("ApiKey")],
            Auth::Cluster => vec![one("ClusterToken")],
        }
    }
}

/// Which error body a route answers with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Errors {
    /// `{"detail": {"error", "message"}}` (`ErrorBody`).
    Sandpit,
    /// `{"code", "message"}` (`OsError`).
    OpenSandbox,
}

/// A request or response body: its media type and schema.
#[derive(Clone)]
pub(crate) struct Body {
    media: &'static str,
    schema: RefOr<Schema>,
}

/// A JSON body of a named component.
pub(crate) fn json(component: &str) -> Body {
    Body {
        media: "application/json",
        schema: RefOr::Ref(Ref::from_schema_name(component)),
    }
}

/// A JSON array of a named component.
pub(crate) fn json_array(component: &str) -> Body {
    let items = RefOr::Ref(Ref::from_schema_name(component));
    Body {
        media: "application/json",
        schema: RefOr::T(Schema::Array(utoipa::openapi::schema::Array::new(items))),
    }
}

/// A body of `media` described in words.
pub(crate) fn other(media: &'static str, description: &str) -> Body {
    let schema = match media {
        "application/json" => ObjectBuilder::new().description(Some(description)).build(),
        _ => ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .build(),
    };
    Body {
        media,
        schema: RefOr::T(Schema::Object(schema)),
    }
}

/// One operation of one or more methods on a path (axum syntax: `{name}`,
/// `{*rest}`).
pub(crate) struct Route {
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub operation: Operation,
}

/// What [`Op::build`] turns into an [`Operation`].
pub(crate) struct Op {
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub errors: Errors,
    pub request: Option<Body>,
    pub status: u16,
    pub response: Option<Body>,
    pub query: Vec<(&'static str, &'static str)>,
}

impl Op {
    pub fn new(tag: &'static str, summary: &'static str, auth: Auth) -> Self {
        Op {
            tag,
            summary,
            auth,
            errors: Errors::Sandpit,
            request: None,
            status: 200,
            response: None,
            query: Vec::new(),
        }
    }

    pub fn errors(mut self, errors: Errors) -> Self {
        self.errors = errors;
        self
    }

    pub fn request(mut self, body: Body) -> Self {
        self.request = Some(body);
        self
    }

    pub fn ok(mut self, status: u16, body: Option<Body>) -> Self {
        self.status = status;
        self.response = body;
        self
    }

    pub fn query(mut self, name: &'static str, description: &'static str) -> Self {
        self.query.push((name, description));
        self
    }

    fn build(self, path: &str, extra: Vec<utoipa::openapi::path::Parameter>) -> Operation {
        let mut op = OperationBuilder::new()
            .tag(self.tag)
            .summary(Some(self.summary))
            .securities(Some(self.auth.requirements()));
        for name in path_params(path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name.clone())
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some(path_param_description(&name)))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        for (name, description) in self.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(description))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        for parameter in extra {
            op = op.parameter(parameter);
        }
        if let Some(body) = self.request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(body.media, Content::new(Some(body.schema)))
                    .build(),
            ));
        }
        let mut ok = ResponseBuilder::new().description(status_text(self.status));
        if let Some(body) = self.response {
            ok = ok.content(body.media, Content::new(Some(body.schema)));
        }
        op = op.response(self.status.to_string(), ok.build());
        let error = match self.errors {
            Errors::Sandpit => "ErrorBody",
            Errors::OpenSandbox => "OsError",
        };
        for (range, text) in [("4XX", "Refused"), ("5XX", "Failed")] {
            op = op.response(
                range,
                ResponseBuilder::new()
                    .description(text)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name(error))),
                    )
                    .build(),
            );
        }
        op.build()
    }
}

/// The parameter names of an axum path (`{id}`, `{*rest}` → `id`, `rest`).
pub(crate) fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*').to_owned())
        .collect()
}

/// The OpenAPI form of an axum path: `{*rest}` becomes `{rest}` (its value
/// may contain `/`).
pub(crate) fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

fn path_param_description(name: &str) -> &'static str {
    match name {
        "name" => "Name (or id) of the sandbox or resource",
        "id" => "Id of the sandbox (or of the key, for `/keys/{id}`)",
        "reference" => "Snapshot id, `name:tag`, or bare name",
        "tenant" => "Tenant name or id",
        "key" => "Secret name",
        "token" => "Signed download token",
        "port" => "Port inside the sandbox",
        "cid" => "Command id",
        "ctx" => "Code context id",
        "rest" => "The rest of the path (may contain `/`)",
        "path" => "Asset path",
        _ => "Path parameter",
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        101 => "Switching Protocols",
        501 => "Not Implemented",
        _ => "Response",
    }
}

/// Every method an `any(...)` route answers that the document lists.
pub(crate) const ANY: &[HttpMethod] = &[
    HttpMethod::Get,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Patch,
    HttpMethod::Delete,
];

pub(crate) fn route(methods: &[HttpMethod], path: &str, op: Op) -> Route {
    route_with(methods, path, op, Vec::new())
}

pub(crate) fn route_with(
    methods: &[HttpMethod],
    path: &str,
    op: Op,
    extra: Vec<utoipa::openapi::path::Parameter>,
) -> Route {
    Route {
        path: openapi_path(path),
        methods: methods.to_vec(),
        operation: op.build(path, extra),
    }
}
