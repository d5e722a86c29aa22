//! User and group names from `/etc/passwd` and `/etc/group` (the files, not NSS: a policy names
//! local accounts, and reading two files needs no C library).

use std::path::Path;

/// Where account files are read from.
#[derive(Debug, Clone, Copy)]
pub struct Accounts<'a> {
    /// The `passwd` file.
    pub passwd: &'a Path,
    /// The `group` file.
    pub group: &'a Path,
}

impl Accounts<'static> {
    /// The system's files.
    pub fn system() -> Accounts<'static> {
        Accounts {
            passwd: Path::new("/etc/passwd"),
            group: Path::new("/etc/group"),
        }
    }
}

impl Accounts<'_> {
    /// The uid of user `name`.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        id_of(self.passwd, name, 2)
    }

    /// The name of user `uid`.
    pub fn user_name(&self, uid: u32) -> Option<String> {
        name_of(self.passwd, uid, 2)
    }

    /// The gid of group `name`.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        id_of(self.group, name, 2)
    }

    /// The name of group `gid`.
    pub fn group_name(&self, gid: u32) -> Option<String> {
        name_of(self.group, gid, 2)
    }
}

/// The number in field `field` of the line of `file` whose first field is `name`.
fn id_of(file: &Path, name: &str, field: usize) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| fields.get(field)?.parse().ok())
}

/// The first field of the line of `file` whose field `field` is `id`.
fn name_of(file: &Path, id: u32, field: usize) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let id = id.to_string();
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(field) == Some(&id.as_str()))
        .and_then(|fields| fields.first().map(|n| (*n).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_come_from_the_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
        )
        .expect("write passwd");
        std::fs::write(&group, "root:x:0:\nplexus:x:990:alice,bob\n").expect("write group");
        let accounts = Accounts {
            passwd: &passwd,
            group: &group,
        };
        assert_eq!(accounts.uid_of("alice"), Some(1001));
        assert_eq!(accounts.uid_of("bob"), None);
        assert_eq!(accounts.user_name(0).as_deref(), Some("root"));
        assert_eq!(accounts.user_name(7), None);
        assert_eq!(accounts.gid_of("plexus"), Some(990));
        assert_eq!(accounts.group_name(990).as_deref(), Some("plexus"));
    }
}
