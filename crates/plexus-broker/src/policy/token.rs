//! The shared secret a TCP peer presents: read from a file only its owner can read, compared in
//! constant time. Any listener that authenticates by token (the native `hello`, an HTTP
//! server's header) uses one [`TokenCheck`].

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Tokens shorter than this are refused: a guessable secret protects nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// The broker's token.
#[derive(Clone)]
pub struct TokenCheck {
    token: Vec<u8>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(..)")
    }
}

impl TokenCheck {
    /// The token in `path` (surrounding whitespace removed). Refused when the file is readable
    /// or writable by group or others, or the token is shorter than [`MIN_TOKEN_LEN`].
    pub fn from_file(path: &Path) -> Result<TokenCheck, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "token file {} has mode {:04o}: others could read the token; chmod 600 it",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        TokenCheck::new(text.trim_ascii())
            .map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// A check for `token`, at least [`MIN_TOKEN_LEN`] bytes.
    pub fn new(token: &[u8]) -> Result<TokenCheck, String> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token is {} bytes; at least {MIN_TOKEN_LEN} are needed",
                token.len()
            ));
        }
        Ok(TokenCheck {
            token: token.to_vec(),
        })
    }

    /// Whether `presented` is the token. The time taken does not depend on which bytes differ
    /// (only on the lengths).
    pub fn verify(&self, presented: &[u8]) -> bool {
        constant_time_eq::constant_time_eq(&self.token, presented)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn only_the_token_itself_verifies() {
        let check = TokenCheck::new(b"0123456789abcdef").expect("long enough");
        assert!(check.verify(b"0123456789abcdef"));
        assert!(!check.verify(b"0123456789abcdeF"));
        assert!(!check.verify(b"0123456789abcde"));
        assert!(!check.verify(b""));
        assert!(TokenCheck::new(b"short").is_err());
    }

    #[test]
    fn a_token_file_must_be_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = TokenCheck::from_file(&path).expect_err("readable by others");
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let check = TokenCheck::from_file(&path).expect("private file");
        assert!(
            check.verify(b"0123456789abcdef"),
            "the newline is not part of it"
        );
    }
}
