//! The parts of an OCI image config a sandbox uses.

use serde::{Deserialize, Serialize};

/// `Env`, `Cmd`, `Entrypoint`, `WorkingDir` and `User` of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunSection>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunSection {
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

impl ImageConfig {
    /// Parse an image config blob (`application/vnd.oci.image.config.v1+json`).
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let file: ConfigFile = serde_json::from_str(json)?;
        let Some(run) = file.config else {
            return Ok(Self::default());
        };
        let env = run
            .env
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
            })
            .collect();
        Ok(Self {
            env,
            cmd: run.cmd.unwrap_or_default(),
            entrypoint: run.entrypoint.unwrap_or_default(),
            working_dir: run.working_dir.filter(|d| d.starts_with('/')),
            user: run.user.filter(|u| !u.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_run_section() {
        let json = r#"{"architecture":"amd64","config":{"Env":["PATH=/bin:/usr/bin","A=b=c","bad"],
            "Cmd":["sh"],"Entrypoint":null,"WorkingDir":"/app","User":"1000:1000"}}"#;
        let c = ImageConfig::parse(json).unwrap();
        assert_eq!(
            c.env,
            vec![
                ("PATH".into(), "/bin:/usr/bin".into()),
                ("A".into(), "b=c".into())
            ]
        );
        assert_eq!(c.cmd, vec!["sh"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(ImageConfig::parse("{}").unwrap(), ImageConfig::default());
    }
}
