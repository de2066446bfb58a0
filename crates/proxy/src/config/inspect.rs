//! The inspector's settings (`PROXY_INSPECT_*`): where its listener is (none: no inspector and
//! no capture at all), how many exchanges it keeps, how much of each body, the memory they may
//! take together, and whether credentials are masked.

use std::net::SocketAddr;

use common::env::{Env, EnvError};

use super::defaults;

/// `PROXY_INSPECT_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspect {
    /// `PROXY_INSPECT_LISTEN`: the inspector's plain-HTTP listener; `None` (empty): off.
    pub listen: Option<SocketAddr>,
    /// `PROXY_INSPECT_ENTRIES`: exchanges kept (the oldest go first).
    pub entries: usize,
    /// `PROXY_INSPECT_BODY_LIMIT`: bytes kept of each body; the rest is counted, not kept.
    pub body_limit: u64,
    /// `PROXY_INSPECT_MEMORY`: bytes all kept heads and bodies may take together.
    pub memory: u64,
    /// `PROXY_INSPECT_MASK`: show `Authorization`, `Proxy-Authorization`, `Cookie` and
    /// `Set-Cookie` values as `***`.
    pub mask: bool,
}

impl Default for Inspect {
    fn default() -> Self {
        Inspect {
            listen: None,
            entries: defaults::INSPECT_ENTRIES,
            body_limit: defaults::INSPECT_BODY_LIMIT,
            memory: defaults::INSPECT_MEMORY,
            mask: defaults::INSPECT_MASK,
        }
    }
}

impl Inspect {
    pub(super) fn from_env(env: &Env) -> Result<Self, EnvError> {
        let name = "PROXY_INSPECT_LISTEN";
        let listen = match env.get(name)?.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                EnvError::invalid(
                    name,
                    v,
                    "expected an address such as 127.0.0.1:4040, or empty",
                )
            })?),
        };
        let entries = env.parsed("PROXY_INSPECT_ENTRIES", defaults::INSPECT_ENTRIES)?;
        if entries == 0 {
            let why =
                "must be at least 1 (turn the inspector off with an empty PROXY_INSPECT_LISTEN)";
            return Err(EnvError::invalid("PROXY_INSPECT_ENTRIES", "0", why));
        }
        let body_limit = env.size("PROXY_INSPECT_BODY_LIMIT", defaults::INSPECT_BODY_LIMIT)?;
        let memory = env.size("PROXY_INSPECT_MEMORY", defaults::INSPECT_MEMORY)?;
        if memory < defaults::INSPECT_MIN_MEMORY {
            return Err(EnvError::invalid(
                "PROXY_INSPECT_MEMORY",
                &memory.to_string(),
                "must be at least 1m",
            ));
        }
        Ok(Inspect {
            listen,
            entries,
            body_limit,
            memory,
            mask: env.bool("PROXY_INSPECT_MASK", defaults::INSPECT_MASK)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Inspect, EnvError> {
        Inspect::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn off_by_default_with_the_documented_bounds() {
        let i = parse(&[]).expect("defaults");
        assert_eq!(i, Inspect::default());
        assert_eq!(i.listen, None);
        assert_eq!(
            (i.entries, i.body_limit, i.memory, i.mask),
            (1000, 1 << 20, 64 << 20, true)
        );
        assert_eq!(
            parse(&[("PROXY_INSPECT_LISTEN", " ")])
                .expect("blank")
                .listen,
            None
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases = [
            ("PROXY_INSPECT_LISTEN", "localhost:4040"),
            ("PROXY_INSPECT_ENTRIES", "0"),
            ("PROXY_INSPECT_BODY_LIMIT", "lots"),
            ("PROXY_INSPECT_MEMORY", "64k"),
            ("PROXY_INSPECT_MASK", "maybe"),
        ];
        for (name, value) in cases {
            let err = parse(&[(name, value)]).expect_err(value).to_string();
            assert!(err.contains(name), "{err}");
        }
        let on = parse(&[("PROXY_INSPECT_LISTEN", "0.0.0.0:4040")]).expect("on");
        assert_eq!(on.listen, Some(SocketAddr::from(([0, 0, 0, 0], 4040))));
    }
}
