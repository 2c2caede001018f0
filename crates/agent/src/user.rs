//! Resolving a `run_config.user` to numeric credentials.
//!
//! The agent is a static binary inside images of any libc, so it cannot rely
//! on NSS: it reads `/etc/passwd` and `/etc/group` itself. Accepted forms are
//! Docker's: `name`, `uid`, `name:group`, `uid:gid` (and the mixed forms).
//! A numeric uid missing from `/etc/passwd` runs with gid 0, as Docker does.

use std::path::{Path, PathBuf};

/// Who a command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (including `gid`).
    pub groups: Vec<u32>,
    /// Account name and home, when the user is in `/etc/passwd`.
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

/// Why a user spec did not resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} is empty or malformed")]
    Malformed(String),
    #[error("user {0:?} not found in /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} not found in /etc/group")]
    UnknownGroup(String),
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The account databases of one root filesystem.
pub struct Accounts {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Reads `{etc}/passwd` and `{etc}/group`; a missing file is empty.
    pub fn load(etc: &Path) -> Self {
        let read = |name: &str| std::fs::read_to_string(etc.join(name)).unwrap_or_default();
        Self::parse(&read("passwd"), &read("group"))
    }

    fn parse(passwd: &str, group: &str) -> Self {
        Self {
            passwd: passwd.lines().filter_map(parse_passwd).collect(),
            groups: group.lines().filter_map(parse_group).collect(),
        }
    }

    /// Resolves `spec` (`user[:group]`).
    pub fn resolve(&self, spec: &str) -> Result<Credentials, UserError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(UserError::Malformed(spec.to_string()));
        }
        let entry = self.find_user(user)?;
        let uid = entry
            .as_ref()
            .map_or_else(|| parse_id(user), |e| Some(e.uid));
        let uid = uid.ok_or_else(|| UserError::UnknownUser(user.to_string()))?;
        let gid = match group {
            Some(group) => self.find_group(group)?,
            None => entry.as_ref().map_or(0, |e| e.gid),
        };
        let name = entry.as_ref().map(|e| e.name.clone());
        Ok(Credentials {
            uid,
            gid,
            groups: self.supplementary(name.as_deref(), gid),
            home: entry.map(|e| e.home),
            name,
        })
    }

    fn find_user(&self, user: &str) -> Result<Option<PasswdEntry>, UserError> {
        let by_name = self.passwd.iter().find(|e| e.name == user);
        if let Some(entry) = by_name {
            return Ok(Some(entry.clone()));
        }
        match parse_id(user) {
            Some(uid) => Ok(self.passwd.iter().find(|e| e.uid == uid).cloned()),
            None => Err(UserError::UnknownUser(user.to_string())),
        }
    }

    fn find_group(&self, group: &str) -> Result<u32, UserError> {
        if let Some(entry) = self.groups.iter().find(|g| g.name == group) {
            return Ok(entry.gid);
        }
        parse_id(group).ok_or_else(|| UserError::UnknownGroup(group.to_string()))
    }

    fn supplementary(&self, name: Option<&str>, gid: u32) -> Vec<u32> {
        let mut groups = vec![gid];
        let Some(name) = name else { return groups };
        for group in &self.groups {
            if group.members.iter().any(|m| m == name) && !groups.contains(&group.gid) {
                groups.push(group.gid);
            }
        }
        groups
    }
}

fn parse_id(text: &str) -> Option<u32> {
    text.parse().ok()
}

fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(PasswdEntry {
        name: fields[0].to_string(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: PathBuf::from(fields[5]),
    })
}

fn parse_group(line: &str) -> Option<GroupEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 4 || line.starts_with('#') {
        return None;
    }
    Some(GroupEntry {
        name: fields[0].to_string(),
        gid: fields[2].parse().ok()?,
        members: fields[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          user:x:1000:1000::/home/user:/bin/sh\n\
                          # comment\n\
                          web:x:33:33:www:/var/www:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\ndocker:x:999:user,web\nwww:x:33:\n";

    fn accounts() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    #[test]
    fn name_resolves_with_home_and_groups() {
        let creds = accounts().resolve("user").expect("resolves");
        assert_eq!((creds.uid, creds.gid), (1000, 1000));
        assert_eq!(creds.groups, vec![1000, 999]);
        assert_eq!(creds.home, Some(PathBuf::from("/home/user")));
    }

    #[test]
    fn numeric_forms() {
        let a = accounts();
        assert_eq!(
            a.resolve("33").expect("known uid").name.as_deref(),
            Some("web")
        );
        let unknown = a.resolve("4242").expect("unknown uid is fine");
        assert_eq!((unknown.uid, unknown.gid, unknown.name), (4242, 0, None));
        let both = a.resolve("4242:4343").expect("uid:gid");
        assert_eq!((both.uid, both.gid), (4242, 4343));
    }

    #[test]
    fn name_and_group() {
        let creds = accounts().resolve("user:www").expect("resolves");
        assert_eq!((creds.uid, creds.gid), (1000, 33));
        assert_eq!(creds.groups, vec![33, 999]);
    }

    #[test]
    fn unknown_names_fail() {
        let a = accounts();
        assert_eq!(
            a.resolve("nobody-here"),
            Err(UserError::UnknownUser("nobody-here".into()))
        );
        assert_eq!(
            a.resolve("user:nogroup"),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        assert!(matches!(a.resolve(":1"), Err(UserError::Malformed(_))));
    }
}
