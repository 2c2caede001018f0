//! execd's files and directories, on the agent's protocol (see `super`).
//!
//! Paths travel to scripts as quoted positional parameters (`set -- ...`),
//! never spliced into the script text.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::opensandbox::agent::{sh_quote, Agent, ExecOutput};
use crate::opensandbox::error::OsError;
use crate::opensandbox::model::rfc3339;

/// Seconds a file script may run.
const SCRIPT_TIMEOUT: f64 = 120.0;
/// Most entries a search or listing returns.
pub const MAX_ENTRIES: usize = 10_000;
/// Largest file `replace` and line-based downloads read.
pub const MAX_EDIT_BYTES: usize = 64 << 20;

/// `FileInfo` of the spec.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub size: i64,
    pub modified_at: String,
    pub created_at: String,
    pub owner: String,
    pub group: String,
    /// Permission bits written in octal digits (`755`).
    pub mode: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `Permission` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Permission {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
}

/// `FileMetadata` of an upload part.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileMetadata {
    pub path: String,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RenameItem {
    pub src: String,
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReplaceItem {
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaceResult {
    pub replaced_count: usize,
}

/// `set -- 'a' 'b'` for a script's positional parameters.
fn args<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = values.into_iter().map(sh_quote).collect();
    format!("set -- {}\n", quoted.join(" "))
}

/// Runs `script`; a non-zero exit becomes an error from its stderr.
async fn script(agent: &Agent, script: &str) -> Result<ExecOutput, OsError> {
    let out = agent.exec(script, SCRIPT_TIMEOUT).await?;
    if out.exit_code == 0 {
        return Ok(out);
    }
    let message = out.stderr.trim().to_owned();
    let message = if message.is_empty() {
        format!("file operation failed with exit code {}", out.exit_code)
    } else {
        message
    };
    Err(
        if message.contains("No such file") || message.contains("not found") {
            OsError::new(StatusCode::NOT_FOUND, "FILE_NOT_FOUND", message)
        } else if message.contains("Permission denied")
            || message.contains("Operation not permitted")
        {
            OsError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
        } else if out.exit_code == 2 {
            OsError::bad_request(message)
        } else {
            OsError::new(StatusCode::INTERNAL_SERVER_ERROR, "RUNTIME_ERROR", message)
        },
    )
}

/// `stat` of every positional parameter, one line each (`-` if missing).
const STAT_LINES: &str =
    r#"for p in "$@"; do stat -c '%s|%Y|%Z|%U|%G|%a|%F' -- "$p" 2>/dev/null || echo -; done"#;

fn kind_of(text: &str) -> &'static str {
    match text {
        "directory" => "directory",
        "symbolic link" => "symlink",
        t if t.contains("regular") => "file",
        _ => "other",
    }
}

fn time(seconds: &str) -> String {
    let seconds = seconds.parse::<i64>().unwrap_or(0);
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(rfc3339)
        .unwrap_or_default()
}

/// One `STAT_LINES` line, or `None` for a missing path.
fn parse_stat(path: &str, line: &str) -> Option<FileInfo> {
    let parts: Vec<&str> = line.splitn(7, '|').collect();
    let [size, mtime, ctime, owner, group, mode, kind] = parts.as_slice() else {
        return None;
    };
    Some(FileInfo {
        path: path.to_owned(),
        size: size.parse().unwrap_or(0),
        modified_at: time(mtime),
        created_at: time(ctime),
        owner: (*owner).to_owned(),
        group: (*group).to_owned(),
        mode: mode.parse().unwrap_or(0),
        kind: kind_of(kind),
    })
}

/// Info on `paths`, `None` for each missing one.
pub async fn stat_all(agent: &Agent, paths: &[String]) -> Result<Vec<Option<FileInfo>>, OsError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!("{}{STAT_LINES}", args(paths.iter().map(String::as_str)));
    let out = script(agent, &text).await?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    Ok(paths
        .iter()
        .enumerate()
        .map(|(i, p)| lines.get(i).and_then(|l| parse_stat(p, l)))
        .collect())
}

/// `GET /files/info`: 404 if any path is missing.
pub async fn info(agent: &Agent, paths: &[String]) -> Result<BTreeMap<String, FileInfo>, OsError> {
    let found = stat_all(agent, paths).await?;
    let mut map = BTreeMap::new();
    for (path, info) in paths.iter().zip(found) {
        let info = info.ok_or_else(|| {
            OsError::new(
                StatusCode::NOT_FOUND,
                "FILE_NOT_FOUND",
                format!("file not found: {path}"),
            )
        })?;
        map.insert(path.clone(), info);
    }
    Ok(map)
}

/// `DELETE /files`: files only (a directory is refused); missing files
/// are not an error.
pub async fn remove_files(agent: &Agent, paths: &[String]) -> Result<(), OsError> {
    let body = r#"for p in "$@"; do
  if [ -d "$p" ] && [ ! -L "$p" ]; then echo "is a directory: $p" >&2; exit 2; fi
  rm -f -- "$p" || exit 1
done"#;
    script(
        agent,
        &format!("{}{body}", args(paths.iter().map(String::as_str))),
    )
    .await?;
    Ok(())
}

/// `DELETE /directories`: `rm -rf` each path.
pub async fn remove_dirs(agent: &Agent, paths: &[String]) -> Result<(), OsError> {
    let body = r#"for p in "$@"; do rm -rf -- "$p" || exit 1; done"#;
    script(
        agent,
        &format!("{}{body}", args(paths.iter().map(String::as_str))),
    )
    .await?;
    Ok(())
}

/// `POST /files/mv`: in order; the target's directory must exist.
pub async fn rename(agent: &Agent, items: &[RenameItem]) -> Result<(), OsError> {
    let flat = items.iter().flat_map(|i| [i.src.as_str(), i.dest.as_str()]);
    let body = r#"while [ $# -ge 2 ]; do
  [ -e "$1" ] || [ -L "$1" ] || { echo "No such file: $1" >&2; exit 1; }
  mv -- "$1" "$2" || exit 1
  shift 2
done"#;
    script(agent, &format!("{}{body}", args(flat))).await?;
    Ok(())
}

fn check_mode(mode: u32) -> Result<String, OsError> {
    let text = mode.to_string();
    if text.len() > 4 || text.chars().any(|c| c > '7') {
        return Err(OsError::bad_request(format!(
            "mode must be octal digits like 755, got {mode}"
        )));
    }
    Ok(text)
}

/// Lines applying `perm` to `"$1"` (then `shift`).
fn perm_script(perm: &Permission) -> Result<String, OsError> {
    let mut lines = String::new();
    if let Some(mode) = perm.mode {
        lines.push_str(&format!(
            "chmod {} -- \"$1\" || exit 1\n",
            check_mode(mode)?
        ));
    }
    let owner = match (&perm.owner, &perm.group) {
        (Some(o), Some(g)) if !o.is_empty() && !g.is_empty() => Some(format!("{o}:{g}")),
        (Some(o), _) if !o.is_empty() => Some(o.clone()),
        (_, Some(g)) if !g.is_empty() => Some(format!(":{g}")),
        _ => None,
    };
    if let Some(owner) = owner {
        lines.push_str(&format!("chown {} -- \"$1\" || exit 1\n", sh_quote(&owner)));
    }
    Ok(lines)
}

/// `POST /files/permissions`.
pub async fn chmod(agent: &Agent, entries: &BTreeMap<String, Permission>) -> Result<(), OsError> {
    let mut text = String::new();
    for (path, perm) in entries {
        text.push_str(&args([path.as_str()]));
        text.push_str(&format!(
            "[ -e \"$1\" ] || {{ echo \"No such file: $1\" >&2; exit 1; }}\n{}",
            perm_script(perm)?
        ));
    }
    script(agent, &text).await?;
    Ok(())
}

/// `POST /directories`: `mkdir -p` with the given mode and owner.
pub async fn make_dirs(
    agent: &Agent,
    entries: &BTreeMap<String, Permission>,
) -> Result<(), OsError> {
    let mut text = String::new();
    for (path, perm) in entries {
        text.push_str(&args([path.as_str()]));
        text.push_str("mkdir -p -- \"$1\" || exit 1\n");
        let perm = Permission {
            mode: Some(perm.mode.unwrap_or(755)),
            ..perm.clone()
        };
        text.push_str(&perm_script(&perm)?);
    }
    script(agent, &text).await?;
    Ok(())
}

/// Writes an uploaded file, then applies its mode and owner if given.
pub async fn write(agent: &Agent, meta: &FileMetadata, data: Bytes) -> Result<(), OsError> {
    if meta.path.is_empty() {
        return Err(OsError::bad_request("metadata.path is required"));
    }
    agent.upload(&meta.path, data).await?;
    let perm = Permission {
        owner: meta.owner.clone(),
        group: meta.group.clone(),
        mode: meta.mode,
    };
    let lines = perm_script(&perm)?;
    if !lines.is_empty() {
        script(agent, &format!("{}{lines}", args([meta.path.as_str()]))).await?;
    }
    Ok(())
}

/// `GET /files/search`: files under `path` matching glob `pattern`.
pub async fn search(agent: &Agent, path: &str, pattern: &str) -> Result<Vec<FileInfo>, OsError> {
    let exists = stat_all(agent, &[path.to_owned()]).await?;
    if exists.first().is_none_or(Option::is_none) {
        return Err(OsError::new(
            StatusCode::NOT_FOUND,
            "FILE_NOT_FOUND",
            format!("directory not found: {path}"),
        ));
    }
    let pattern = recursive_pattern(pattern);
    let matches = agent.glob(path, &pattern, MAX_ENTRIES as i64).await?;
    let paths: Vec<String> = matches
        .into_iter()
        .filter(|m| !m.is_dir)
        .map(|m| m.path)
        .collect();
    Ok(stat_all(agent, &paths)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// execd matches a pattern without `/` at any depth (`*.py` finds
/// `a/b/c.py`); the agent's glob is anchored at the search root.
fn recursive_pattern(pattern: &str) -> String {
    match pattern {
        "" | "**" => "**".to_owned(),
        p if p.contains('/') => p.to_owned(),
        p => format!("**/{p}"),
    }
}

/// `GET /directories/list`: entries under `path`, `depth` levels down
/// (default 1).
pub async fn list_dir(agent: &Agent, path: &str, depth: u32) -> Result<Vec<FileInfo>, OsError> {
    let text = format!(
        "{}[ -d \"$1\" ] || {{ echo \"No such file or directory: $1\" >&2; exit 1; }}\n\
         find \"$1\" -mindepth 1 -maxdepth {} | head -n {MAX_ENTRIES}",
        args([path]),
        depth.max(1)
    );
    let out = script(agent, &text).await?;
    let paths: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
    Ok(stat_all(agent, &paths)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Reads a whole (bounded) file.
pub async fn read_all(agent: &Agent, path: &str) -> Result<Bytes, OsError> {
    let response = agent.download(path, None).await?;
    let limited = http_body_util::Limited::new(response.into_body(), MAX_EDIT_BYTES);
    http_body_util::BodyExt::collect(limited)
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| OsError::bad_request(format!("cannot read {path}: {e}")))
}

/// `POST /files/replace`: every occurrence, keeping the file's mode.
pub async fn replace(
    agent: &Agent,
    entries: &BTreeMap<String, ReplaceItem>,
) -> Result<BTreeMap<String, ReplaceResult>, OsError> {
    let mut results = BTreeMap::new();
    for (path, item) in entries {
        if item.old.is_empty() {
            return Err(OsError::bad_request(format!(
                "old must not be empty ({path})"
            )));
        }
        let before = stat_all(agent, std::slice::from_ref(path)).await?;
        let info = before.into_iter().flatten().next().ok_or_else(|| {
            OsError::new(
                StatusCode::NOT_FOUND,
                "FILE_NOT_FOUND",
                format!("file not found: {path}"),
            )
        })?;
        let bytes = read_all(agent, path).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| OsError::bad_request(format!("{path} is not UTF-8 text")))?;
        let count = text.matches(item.old.as_str()).count();
        if count > 0 {
            let replaced = text.replace(item.old.as_str(), &item.new);
            agent.upload(path, Bytes::from(replaced)).await?;
            let perm = Permission {
                mode: Some(info.mode),
                ..Permission::default()
            };
            script(
                agent,
                &format!("{}{}", args([path.as_str()]), perm_script(&perm)?),
            )
            .await?;
        }
        results.insert(
            path.clone(),
            ReplaceResult {
                replaced_count: count,
            },
        );
    }
    Ok(results)
}

/// Lines `offset` (1-based) to `offset + limit - 1` of `text`.
pub fn line_window(text: &[u8], offset: Option<usize>, limit: Option<usize>) -> Vec<u8> {
    let start = offset.unwrap_or(1).max(1) - 1;
    let lines = text.split_inclusive(|b| *b == b'\n').skip(start);
    match limit {
        Some(n) => lines.take(n).flatten().copied().collect(),
        None => lines.flatten().copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let info = parse_stat("/a", "12|1700000000|1700000001|root|wheel|644|regular file")
            .expect("parses");
        assert_eq!(info.size, 12);
        assert_eq!(info.mode, 644);
        assert_eq!(info.kind, "file");
        assert_eq!(info.modified_at, "2023-11-14T22:13:20Z");
        assert!(parse_stat("/a", "-").is_none());
        assert_eq!(
            parse_stat("/d", "0|0|0|u|g|755|directory").map(|i| i.kind),
            Some("directory")
        );
    }

    #[test]
    fn modes_are_octal_digits() {
        assert_eq!(check_mode(755).ok().as_deref(), Some("755"));
        assert!(check_mode(789).is_err());
        assert!(check_mode(77777).is_err());
    }

    #[test]
    fn patterns_without_a_slash_match_at_any_depth() {
        assert_eq!(recursive_pattern("*.py"), "**/*.py");
        assert_eq!(recursive_pattern(""), "**");
        assert_eq!(recursive_pattern("src/*.rs"), "src/*.rs");
    }

    #[test]
    fn line_windows() {
        let text = b"a\nb\nc\n";
        assert_eq!(line_window(text, Some(2), Some(1)), b"b\n");
        assert_eq!(line_window(text, None, None), text);
        assert_eq!(line_window(text, Some(3), None), b"c\n");
    }
}
