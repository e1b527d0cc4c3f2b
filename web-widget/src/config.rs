//! The element's attributes, read once per (re)start into a validated [`Config`].
//!
//! Everything here is pure: it takes an attribute lookup and returns a value or a
//! typed [`ConfigError`], so it is tested natively.

use core::fmt;

/// Attributes the element observes; a change to any of them restarts it.
pub const OBSERVED_ATTRIBUTES: [&str; 8] = [
    "sku",
    "api",
    "key",
    "location",
    "location-name",
    "threshold",
    "refresh",
    "channel",
];

/// "Low stock" when available is at most this, unless the page says otherwise.
pub const DEFAULT_LOW_STOCK_THRESHOLD: u32 = 3;
/// The largest threshold accepted (API.md's largest quantity per line).
pub const MAX_LOW_STOCK_THRESHOLD: u32 = 1_000_000;
/// A `refresh` below this is raised to it: a page full of widgets must not hammer the API.
pub const MIN_REFRESH_SECONDS: u32 = 10;
/// A `refresh` above this is lowered to it.
pub const MAX_REFRESH_SECONDS: u32 = 3_600;
/// Longest API base URL accepted.
pub const MAX_API_LEN: usize = 2_048;
/// Longest key accepted (keys travel in a header; be generous but bounded).
pub const MAX_KEY_LEN: usize = 255;
/// Longest display name for a location; longer ones are cut at a character boundary.
pub const MAX_LOCATION_NAME_CHARS: usize = 80;

/// Which availability figure to show: API.md's `channel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Sellable online: after safety stock.
    Online,
    /// Sellable over the counter.
    Pos,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Online => "online",
            Channel::Pos => "pos",
        }
    }
}

/// A validated widget configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub sku: String,
    /// Base URL without a trailing slash, e.g. `https://shop.example`.
    pub api: String,
    pub key: String,
    /// The store this widget speaks for; `None` shows the total.
    pub location: Option<String>,
    /// How the location is named in text (`location-name`); else the server's
    /// `location_name`, else the id.
    pub location_name: Option<String>,
    pub low_stock_threshold: u32,
    /// Seconds between refreshes; `None` fetches once.
    pub refresh_seconds: Option<u32>,
    pub channel: Channel,
}

/// Why the attributes cannot be used. Shown to the page's developer on the console,
/// never to the shopper (who sees "Availability unavailable").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    Missing(&'static str),
    InvalidIdentifier(&'static str),
    InvalidApi,
    InvalidKey,
    /// A secret key (`sk_...`) must never be embedded in a public page.
    SecretKey,
    InvalidChannel,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing(name) => write!(f, "the `{name}` attribute is required"),
            ConfigError::InvalidIdentifier(name) => write!(
                f,
                "the `{name}` attribute must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
            ),
            ConfigError::InvalidApi => {
                f.write_str("the `api` attribute must be an http:// or https:// base URL")
            }
            ConfigError::InvalidKey => {
                f.write_str("the `key` attribute must be a publishable key (pk_...)")
            }
            ConfigError::SecretKey => f.write_str(
                "refusing a secret key (sk_...) in a public page: use a publishable key (pk_...)",
            ),
            ConfigError::InvalidChannel => {
                f.write_str("the `channel` attribute must be `online` or `pos`")
            }
        }
    }
}

/// API.md's identifier rule: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    /// Reads the attributes through `attr` (which returns `None` for an absent one).
    pub fn from_attributes(attr: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let present = |name: &str| attr(name).map(|v| v.trim().to_string());

        let sku = present("sku")
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("sku"))?;
        if !is_identifier(&sku) {
            return Err(ConfigError::InvalidIdentifier("sku"));
        }

        let api = present("api")
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("api"))?;
        let api = parse_api(&api)?;

        let key = present("key")
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("key"))?;
        if key.starts_with("sk_") {
            return Err(ConfigError::SecretKey);
        }
        if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::InvalidKey);
        }

        let location = match present("location").filter(|s| !s.is_empty()) {
            None => None,
            Some(l) if is_identifier(&l) => Some(l),
            Some(_) => return Err(ConfigError::InvalidIdentifier("location")),
        };

        let location_name = present("location-name")
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(MAX_LOCATION_NAME_CHARS).collect());

        let low_stock_threshold = present("threshold")
            .and_then(|t| t.parse::<u32>().ok())
            .map_or(DEFAULT_LOW_STOCK_THRESHOLD, |t| {
                t.min(MAX_LOW_STOCK_THRESHOLD)
            });

        let refresh_seconds = present("refresh")
            .and_then(|r| r.parse::<u32>().ok())
            .filter(|&r| r > 0)
            .map(|r| r.clamp(MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS));

        let channel = match present("channel").as_deref() {
            None | Some("") | Some("online") => Channel::Online,
            Some("pos") => Channel::Pos,
            Some(_) => return Err(ConfigError::InvalidChannel),
        };

        Ok(Config {
            sku,
            api,
            key,
            location,
            location_name,
            low_stock_threshold,
            refresh_seconds,
            channel,
        })
    }

    /// `GET {api}/v1/availability?sku=..&channel=..`: every location and the total,
    /// so the widget can also say where else the SKU is in stock.
    /// The SKU is a validated identifier, so it needs no escaping.
    pub fn availability_url(&self) -> String {
        format!(
            "{}/v1/availability?sku={}&channel={}",
            self.api,
            self.sku,
            self.channel.as_str()
        )
    }
}

fn parse_api(api: &str) -> Result<String, ConfigError> {
    let rest = api
        .strip_prefix("https://")
        .or_else(|| api.strip_prefix("http://"))
        .ok_or(ConfigError::InvalidApi)?;
    let host = rest.split('/').next().unwrap_or("");
    if api.len() > MAX_API_LEN
        || host.is_empty()
        || api.contains(['?', '#'])
        || !api.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::InvalidApi);
    }
    Ok(api.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(attrs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let attrs: Vec<(String, String)> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_attributes(|name| {
            attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    const BASE: [(&str, &str); 3] = [
        ("sku", "TEE-BLK-M"),
        ("api", "https://shop.example/"),
        ("key", "pk_dev"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut attrs: Vec<(&str, &str)> = BASE.to_vec();
        for (k, v) in extra {
            attrs.retain(|(name, _)| name != k);
            attrs.push((k, v));
        }
        config(&attrs)
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.api, "https://shop.example");
        assert_eq!(c.location, None);
        assert_eq!(c.location_name, None);
        assert_eq!(c.low_stock_threshold, 3);
        assert_eq!(c.refresh_seconds, None);
        assert_eq!(c.channel, Channel::Online);
        assert_eq!(
            c.availability_url(),
            "https://shop.example/v1/availability?sku=TEE-BLK-M&channel=online"
        );
    }

    #[test]
    fn required_attributes() {
        assert_eq!(config(&[]), Err(ConfigError::Missing("sku")));
        assert_eq!(
            config(&[("sku", "A"), ("key", "pk_1")]),
            Err(ConfigError::Missing("api"))
        );
        assert_eq!(
            config(&[("sku", "A"), ("api", "http://h")]),
            Err(ConfigError::Missing("key"))
        );
        assert_eq!(with(&[("sku", "  ")]), Err(ConfigError::Missing("sku")));
    }

    #[test]
    fn identifiers_are_checked_not_cleaned() {
        assert_eq!(
            with(&[("sku", "TEE BLK")]),
            Err(ConfigError::InvalidIdentifier("sku"))
        );
        assert_eq!(
            with(&[("sku", "a&b=c")]),
            Err(ConfigError::InvalidIdentifier("sku"))
        );
        let long = "x".repeat(65);
        let long: &'static str = long.leak();
        assert_eq!(
            with(&[("sku", long)]),
            Err(ConfigError::InvalidIdentifier("sku"))
        );
        assert_eq!(
            with(&[("location", "store 1")]),
            Err(ConfigError::InvalidIdentifier("location"))
        );
        assert!(is_identifier("Store_1.a-b"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn api_must_be_a_plain_http_base() {
        for bad in [
            "shop.example",
            "ftp://x",
            "https://",
            "https://h/?x=1",
            "https://h/#a",
            "https://h x",
        ] {
            assert_eq!(with(&[("api", bad)]), Err(ConfigError::InvalidApi), "{bad}");
        }
        assert_eq!(
            with(&[("api", "http://127.0.0.1:8787")]).unwrap().api,
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            with(&[("api", "https://h/shop//")]).unwrap().api,
            "https://h/shop"
        );
    }

    #[test]
    fn secret_keys_are_refused() {
        assert_eq!(
            with(&[("key", "sk_dev_admin")]),
            Err(ConfigError::SecretKey)
        );
        assert_eq!(with(&[("key", "pk bad")]), Err(ConfigError::InvalidKey));
    }

    #[test]
    fn threshold_and_refresh_are_bounded() {
        assert_eq!(with(&[("threshold", "0")]).unwrap().low_stock_threshold, 0);
        assert_eq!(
            with(&[("threshold", "10")]).unwrap().low_stock_threshold,
            10
        );
        assert_eq!(
            with(&[("threshold", "4000000000")])
                .unwrap()
                .low_stock_threshold,
            MAX_LOW_STOCK_THRESHOLD
        );
        assert_eq!(with(&[("threshold", "-1")]).unwrap().low_stock_threshold, 3);
        assert_eq!(
            with(&[("threshold", "lots")]).unwrap().low_stock_threshold,
            3
        );

        assert_eq!(with(&[("refresh", "0")]).unwrap().refresh_seconds, None);
        assert_eq!(with(&[("refresh", "1")]).unwrap().refresh_seconds, Some(10));
        assert_eq!(
            with(&[("refresh", "60")]).unwrap().refresh_seconds,
            Some(60)
        );
        assert_eq!(
            with(&[("refresh", "999999")]).unwrap().refresh_seconds,
            Some(MAX_REFRESH_SECONDS)
        );
        assert_eq!(with(&[("refresh", "soon")]).unwrap().refresh_seconds, None);
    }

    #[test]
    fn channel_and_location_name() {
        let c = with(&[("channel", "pos"), ("location", "store-1")]).unwrap();
        assert_eq!(c.channel, Channel::Pos);
        assert_eq!(c.location.as_deref(), Some("store-1"));
        assert!(c.availability_url().ends_with("&channel=pos"));
        assert_eq!(
            with(&[("channel", "wholesale")]),
            Err(ConfigError::InvalidChannel)
        );
        let c = with(&[("location", "store-1"), ("location-name", " Downtown ")]).unwrap();
        assert_eq!(c.location_name.as_deref(), Some("Downtown"));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            ConfigError::Missing("sku").to_string(),
            "the `sku` attribute is required"
        );
        assert!(!ConfigError::SecretKey.to_string().contains("sk_dev"));
    }
}
