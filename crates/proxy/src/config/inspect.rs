//! The inspector's settings (`PROXY_INSPECT_*`): where its listener is (none: no inspector and
//! no capture at all), how many exchanges it keeps, how much of each body, the memory they may
//! take together, and whether credentials are masked.

use std::net::SocketAddr;

use common::env::{Env, EnvError};

use super::defaults;
use super::settings::{
    INSPECT_BODY_LIMIT, INSPECT_ENTRIES, INSPECT_LISTEN, INSPECT_MASK, INSPECT_MEMORY,
};

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

impl Inspect {
    pub(super) fn from_env(env: &Env) -> Result<Self, EnvError> {
        let memory = env.read(&INSPECT_MEMORY)?.0;
        if memory < defaults::INSPECT_MIN_MEMORY {
            let name = INSPECT_MEMORY.name();
            return Err(EnvError::invalid(
                name,
                &memory.to_string(),
                "must be at least 1m",
            ));
        }
        Ok(Inspect {
            listen: env.read(&INSPECT_LISTEN)?,
            entries: env.read(&INSPECT_ENTRIES)?.0,
            body_limit: env.read(&INSPECT_BODY_LIMIT)?.0,
            memory,
            mask: env.read(&INSPECT_MASK)?,
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
