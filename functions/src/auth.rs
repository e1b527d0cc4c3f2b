//! API keys and roles.
//!
//! Keys come from the `API_KEYS` secret (or var): `key:role[@location][#name]`
//! entries separated by commas or newlines (several keys per role: rotate by
//! adding the new key, moving clients, then removing the old; a change of the
//! secret reaches each isolate when it is new, at once after a deploy), e.g.
//! `sk_dev_admin:admin,sk_dev_pos_store-1:pos@store-1,pk_dev:publishable`.
//! A presented key is compared with every configured key in constant time.
//! A key is never logged and never appears in an error.
use omnistock_core::LocationId;

use crate::http::Problem;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Storefront,
    Pos,
    Publishable,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Storefront => "storefront",
            Role::Pos => "pos",
            Role::Publishable => "publishable",
        }
    }
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "storefront" => Role::Storefront,
            "pos" => Role::Pos,
            "publishable" => Role::Publishable,
            _ => return None,
        })
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// The location a POS key is bound to.
    pub location: Option<LocationId>,
    /// The key's name (`#name` in `API_KEYS`: a staff member, a till, an
    /// integration), recorded as part of the actor.
    pub key_name: Option<String>,
}

impl Principal {
    /// A stable name for the caller that holds no secret: the role and its
    /// location. Idempotency keys are scoped by it; the ledger records it as actor.
    pub fn name(&self) -> String {
        match &self.location {
            Some(l) => format!("{}@{}", self.role.as_str(), l),
            None => self.role.as_str().to_string(),
        }
    }

    /// Who did it, for the ledger and order history: the role (and
    /// location), and the key's name when it has one (`admin#alice`).
    pub fn actor(&self) -> String {
        match &self.key_name {
            Some(n) => format!("{}#{n}", self.name()),
            None => self.name(),
        }
    }

    /// The channel this caller sells through: a till's stock is the POS
    /// channel's, everyone else's the online channel's.
    pub fn channel(&self) -> omnistock_core::Channel {
        omnistock_core::reservation::channel_for(self.role == Role::Pos)
    }

    /// Requires one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "a {} key may not do this",
                self.role.as_str()
            )))
        }
    }

    /// A POS key acts only at its own location; admin anywhere.
    pub fn require_at(&self, roles: &[Role], location: &LocationId) -> Result<(), Problem> {
        self.require(roles)?;
        if self.role == Role::Pos && self.location.as_ref() != Some(location) {
            return Err(Problem::forbidden(format!(
                "this POS key is bound to another location than {location}"
            )));
        }
        Ok(())
    }
}

/// One configured key.
pub struct KeyEntry {
    key: Vec<u8>,
    principal: Principal,
}

/// Parses the `API_KEYS` configuration. Malformed entries are skipped (and
/// counted, so the caller can log how many without showing them).
pub fn parse_keys(config: &str) -> (Vec<KeyEntry>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for entry in config.split([',', '\n']) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((key, rest)) = entry.rsplit_once(':') else {
            bad += 1;
            continue;
        };
        // `#name` (issue 12): 1 to 64 of A-Z a-z 0-9 _ . -
        let (rest, key_name) = match rest.split_once('#') {
            Some((r, n)) => (r, Some(n.trim())),
            None => (rest, None),
        };
        if key_name.is_some_and(|n| {
            n.is_empty()
                || n.len() > 64
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        }) {
            bad += 1;
            continue;
        }
        let (role, location) = match rest.split_once('@') {
            Some((r, l)) => (r, Some(l)),
            None => (rest, None),
        };
        let Some(role) = Role::parse(role.trim()) else {
            bad += 1;
            continue;
        };
        let location = match location.map(|l| LocationId::parse(l.trim())) {
            None => None,
            Some(Ok(l)) => Some(l),
            Some(Err(_)) => {
                bad += 1;
                continue;
            }
        };
        if key.trim().is_empty() || (role == Role::Pos) != location.is_some() {
            bad += 1;
            continue;
        }
        out.push(KeyEntry {
            key: key.trim().as_bytes().to_vec(),
            principal: Principal {
                role,
                location,
                key_name: key_name.map(str::to_string),
            },
        });
    }
    (out, bad)
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Finds the principal of `Authorization: Bearer <key>`, checking every
/// configured key (no early exit).
pub fn authenticate(header: Option<&str>, keys: &[KeyEntry]) -> Result<Principal, Problem> {
    let Some(h) = header else {
        return Err(Problem::unauthorized(
            "an Authorization: Bearer <key> header is required",
        ));
    };
    let presented = match h.trim().split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <key>`",
            ))
        }
    };
    let mut found: Option<&Principal> = None;
    for k in keys {
        if ct_eq(&k.key, presented.as_bytes()) && found.is_none() {
            found = Some(&k.principal);
        }
    }
    found
        .cloned()
        .ok_or_else(|| Problem::unauthorized("the key is not valid"))
}

/// The dev keys of API.md, as `make dev` writes them into `.dev.vars`.
pub const DEV_KEYS: &str =
    "sk_dev_admin:admin,sk_dev_storefront:storefront,sk_dev_pos_store-1:pos@store-1,pk_dev:publishable";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_parse() {
        let (keys, bad) = parse_keys(DEV_KEYS);
        assert_eq!(bad, 0);
        assert_eq!(keys.len(), 4);
        let p = authenticate(Some("Bearer sk_dev_pos_store-1"), &keys).unwrap();
        assert_eq!(p.role, Role::Pos);
        assert_eq!(p.name(), "pos@store-1");
        assert_eq!(
            authenticate(Some("bearer pk_dev"), &keys).unwrap().role,
            Role::Publishable
        );
        assert_eq!(
            authenticate(Some("Bearer sk_dev_admi"), &keys)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(authenticate(None, &keys).unwrap_err().status, 401);
        assert_eq!(
            authenticate(Some("Basic sk_dev_admin"), &keys)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let (keys, bad) = parse_keys("a:root, b:pos, c:admin, :admin, d:pos@bad place");
        assert_eq!(keys.len(), 1);
        assert_eq!(bad, 4);
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn pos_keys_act_only_at_their_location() {
        let (keys, _) = parse_keys(DEV_KEYS);
        let p = authenticate(Some("Bearer sk_dev_pos_store-1"), &keys).unwrap();
        let s1 = LocationId::parse("store-1").unwrap();
        let s2 = LocationId::parse("store-2").unwrap();
        assert!(p.require_at(&[Role::Pos, Role::Admin], &s1).is_ok());
        assert_eq!(
            p.require_at(&[Role::Pos, Role::Admin], &s2)
                .unwrap_err()
                .status,
            403
        );
    }
}
