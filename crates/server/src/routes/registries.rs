//! `/registries` (issue 17 item 3): a tenant's private image registries, as
//! the SDK's `client.registries` calls them (create, list, retrieve, update,
//! delete; addressed by name). The password is sealed with the workspace
//! secrets' key (associated data `tenant/registry:<id>`, so a sealed value
//! does not open as another row) and never returned. `create_snapshot(...,
//! registry_id=...)` pulls with the registry's credentials
//! ([`credentials_for`]); an unknown id is 404, an image on another host 422.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandpit_images::Credentials;
use serde::{Deserialize, Serialize};

use super::extract::{Body, Query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{RegistryRow, StoreError};

const MAX_NAME_LEN: usize = 128;
const MAX_SECRET_LEN: usize = 4096;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistryRequest {
    name: String,
    url: String,
    auth_type: Option<String>,
    aws_role_arn: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRegistryRequest {
    name: Option<String>,
    url: Option<String>,
    auth_type: Option<String>,
    aws_role_arn: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRegistriesQuery {
    cursor: Option<String>,
    limit: Option<i64>,
    page_size: Option<i64>,
    offset: Option<i64>,
    name_contains: Option<String>,
}

/// One registry as every endpoint returns it: never the password.
#[derive(Debug, Serialize)]
pub struct RegistryResponse {
    id: String,
    name: String,
    url: String,
    auth_type: String,
    aws_role_arn: Option<String>,
    provider: &'static str,
    created_at: String,
    updated_at: String,
    created_by: Option<String>,
    updated_by: Option<String>,
}

fn response(row: RegistryRow) -> RegistryResponse {
    RegistryResponse {
        id: row.id,
        name: row.name,
        url: row.url,
        auth_type: row.auth_type,
        aws_role_arn: None,
        provider: "DOCKER_REGISTRY",
        created_at: row.created_at,
        updated_at: row.updated_at,
        created_by: row.created_by,
        updated_by: row.updated_by,
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "Invalid registry name '{name}': use 1-{MAX_NAME_LEN} letters, digits, '-', '_' \
             and '.', starting with a letter or digit"
        )))
    }
}

/// `registry.example.com[:port]` from what a user may write
/// (`https://registry.example.com/`); Docker Hub's aliases are `docker.io`.
pub fn normalize_host(url: &str) -> Result<String, ApiError> {
    let bare = url
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !ok {
        return Err(ApiError::Validation(format!(
            "Invalid registry url '{url}': give the registry's host[:port], \
             e.g. registry.example.com"
        )));
    }
    Ok(match bare.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => bare,
    })
}

fn check_auth_type(auth_type: Option<&str>, aws_role_arn: Option<&str>) -> Result<(), ApiError> {
    if aws_role_arn.is_some() || auth_type == Some("AWS_ROLE") {
        return Err(ApiError::Validation(
            "auth_type AWS_ROLE (aws_role_arn) is not supported: Sandpit has no AWS identity \
             to assume a role with; use DOCKER_CONFIG with a username and password"
                .into(),
        ));
    }
    match auth_type {
        None | Some(DOCKER_CONFIG) => Ok(()),
        Some(other) => Err(ApiError::Validation(format!(
            "auth_type must be DOCKER_CONFIG, got '{other}'"
        ))),
    }
}

fn check_secret(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_SECRET_LEN || value.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "{field} must be 1-{MAX_SECRET_LEN} bytes with no control characters"
        )));
    }
    Ok(())
}

/// The associated data name a registry's password is sealed under.
fn sealed_name(id: &str) -> String {
    format!("registry:{id}")
}

fn seal(state: &AppState, tenant: &str, id: &str, password: &str) -> Result<String, ApiError> {
    state
        .secrets
        .vault()
        .seal(tenant, &sealed_name(id), password)
}

fn conflict(name: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |err| match err {
        StoreError::Conflict => {
            ApiError::Conflict(format!("A registry named '{name}' already exists"))
        }
        other => other.into(),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Registry",
        name: name.to_owned(),
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateRegistryRequest>,
) -> Result<Response, ApiError> {
    check_name(&req.name)?;
    let url = normalize_host(&req.url)?;
    check_auth_type(req.auth_type.as_deref(), req.aws_role_arn.as_deref())?;
    let (username, password) = match (req.username, req.password) {
        (Some(u), Some(p)) => {
            check_secret("username", &u)?;
            check_secret("password", &p)?;
            (Some(u), Some(p))
        }
        (None, None) => (None, None),
        _ => {
            return Err(ApiError::Validation(
                "username and password go together: give both or neither".into(),
            ))
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let sealed_password = password
        .map(|p| seal(&state, &caller.tenant_id, &id, &p))
        .transpose()?;
    let now = crate::store::now();
    let row = RegistryRow {
        id,
        tenant_id: caller.tenant_id.clone(),
        name: req.name,
        url,
        auth_type: DOCKER_CONFIG.into(),
        username,
        sealed_password,
        created_by: Some(caller.key_id.clone()),
        updated_by: Some(caller.key_id.clone()),
        created_at: now.clone(),
        updated_at: now,
    };
    state
        .store
        .insert_registry(&row)
        .await
        .map_err(conflict(&row.name))?;
    Ok((StatusCode::CREATED, Json(response(row))).into_response())
}

/// A caller's registry by name (or id).
async fn find(state: &AppState, caller: &Caller, name: &str) -> Result<RegistryRow, ApiError> {
    let tenant = &caller.tenant_id;
    if let Some(row) = state.store.registry_by_name(tenant, name).await? {
        return Ok(row);
    }
    state
        .store
        .registry_by_id(tenant, name)
        .await?
        .ok_or_else(|| not_found(name))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<RegistryResponse>, ApiError> {
    Ok(Json(response(find(&state, &caller, &name).await?)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListRegistriesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.page_size.or(q.limit).unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "page_size must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let offset = match &q.cursor {
        Some(cursor) => cursor
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("Invalid cursor '{cursor}'")))?,
        None => q.offset.unwrap_or(0),
    };
    if offset < 0 {
        return Err(ApiError::BadRequest(format!(
            "offset must be >= 0, got {offset}"
        )));
    }
    let rows = state
        .store
        .registries(&caller.tenant_id, q.name_contains.as_deref(), limit, offset)
        .await?;
    let next = (rows.len() as i64 == limit).then(|| (offset + limit).to_string());
    let items: Vec<RegistryResponse> = rows.into_iter().map(response).collect();
    Ok(Json(serde_json::json!({
        "items": items,
        "registries": items,
        "next_cursor": next,
        "offset": offset,
    })))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UpdateRegistryRequest>,
) -> Result<Json<RegistryResponse>, ApiError> {
    check_auth_type(req.auth_type.as_deref(), req.aws_role_arn.as_deref())?;
    let mut row = find(&state, &caller, &name).await?;
    if let Some(new_name) = req.name {
        check_name(&new_name)?;
        row.name = new_name;
    }
    if let Some(url) = req.url {
        row.url = normalize_host(&url)?;
    }
    if let Some(username) = req.username {
        check_secret("username", &username)?;
        row.username = Some(username);
    }
    if let Some(password) = req.password {
        check_secret("password", &password)?;
        row.sealed_password = Some(seal(&state, &caller.tenant_id, &row.id, &password)?);
    }
    if row.username.is_some() != row.sealed_password.is_some() {
        return Err(ApiError::Validation(
            "username and password go together: give both".into(),
        ));
    }
    row.updated_by = Some(caller.key_id.clone());
    row.updated_at = crate::store::now();
    let found = state
        .store
        .update_registry(&row)
        .await
        .map_err(conflict(&row.name))?;
    if !found {
        return Err(not_found(&name));
    }
    Ok(Json(response(row)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = find(&state, &caller, &name).await?;
    state
        .store
        .delete_registry(&caller.tenant_id, &row.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The credentials to pull `image` with for a snapshot naming
/// `registry_id`: 404 for a registry the caller does not have, 422 for an
/// image on another host (the password is only ever sent to its registry).
pub async fn credentials_for(
    state: &AppState,
    caller: &Caller,
    registry_id: &str,
    image: &str,
) -> Result<Option<Credentials>, ApiError> {
    let row = state
        .store
        .registry_by_id(&caller.tenant_id, registry_id)
        .await?
        .ok_or_else(|| not_found(registry_id))?;
    let host = sandpit_images::registry_of(image)
        .map_err(|_| ApiError::Validation(format!("Invalid docker_image '{image}'")))?;
    if normalize_host(&host)? != row.url {
        return Err(ApiError::Validation(format!(
            "docker_image '{image}' is not on registry '{}' ({}): its credentials are only \
             sent to that host",
            row.name, row.url
        )));
    }
    let (Some(username), Some(sealed)) = (row.username, row.sealed_password) else {
        return Ok(None);
    };
    let password = state
        .secrets
        .vault()
        .unseal(&caller.tenant_id, &sealed_name(&row.id), &sealed)
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "registry {} password does not open under the secrets key",
                row.id
            ))
        })?;
    Ok(Some(Credentials { username, password }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized() {
        for (given, want) in [
            ("registry.example.com", "registry.example.com"),
            ("https://Registry.Example.com/", "registry.example.com"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("index.docker.io", "docker.io"),
        ] {
            assert_eq!(normalize_host(given).unwrap(), want);
        }
        for bad in ["", "https://", "a b", "registry.example.com/path"] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_host(&sandpit_images::registry_of("busybox").unwrap()).unwrap(),
            "docker.io"
        );
        assert_eq!(
            sandpit_images::registry_of("127.0.0.1:5000/a/b:1").unwrap(),
            "127.0.0.1:5000"
        );
    }

    #[test]
    fn auth_types() {
        assert!(check_auth_type(None, None).is_ok());
        assert!(check_auth_type(Some("DOCKER_CONFIG"), None).is_ok());
        assert!(check_auth_type(Some("AWS_ROLE"), None).is_err());
        assert!(check_auth_type(None, Some("arn:aws:iam::1:role/x")).is_err());
        assert!(check_auth_type(Some("basic"), None).is_err());
    }
}
