//! How a snapshot is named in requests: a UUID, `name:tag` or a bare name.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRef {
    Id(String),
    Tagged { name: String, tag: String },
    Name(String),
}

impl SnapshotRef {
    pub fn parse(text: &str) -> Self {
        if uuid::Uuid::parse_str(text).is_ok() {
            return SnapshotRef::Id(text.to_owned());
        }
        match text.rsplit_once(':') {
            Some((name, tag)) if !name.is_empty() && !tag.is_empty() => SnapshotRef::Tagged {
                name: name.to_owned(),
                tag: tag.to_owned(),
            },
            _ => SnapshotRef::Name(text.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let id = "0b7e3d6a-5f0e-4a43-9b1c-1f6a5cf0c8a1";
        assert_eq!(SnapshotRef::parse(id), SnapshotRef::Id(id.into()));
        assert_eq!(
            SnapshotRef::parse("env:v2"),
            SnapshotRef::Tagged {
                name: "env".into(),
                tag: "v2".into()
            }
        );
        assert_eq!(SnapshotRef::parse("env"), SnapshotRef::Name("env".into()));
    }
}
