//! Which transport a URL selects.

use super::{ConnectError, ConnectErrorKind};

/// The transports a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `nats://`, `tls://` (also several comma-separated NATS URLs).
    Nats,
    /// `memory://` or `memory://{name}`.
    Memory,
    /// `redis://` (feature `redis`).
    #[cfg(feature = "redis")]
    Redis,
    /// `amqp://` (feature `rabbitmq`).
    #[cfg(feature = "rabbitmq")]
    RabbitMq,
    /// `kafka://` (feature `kafka`).
    #[cfg(feature = "kafka")]
    Kafka,
}

/// The URL schemes jetflow understands, for error messages.
const KNOWN: &str = "nats:// or tls:// (JetStream), memory:// (the embedded broker), redis:// (Redis Streams, feature `redis`), amqp:// (RabbitMQ, feature `rabbitmq`), kafka:// (Kafka, feature `kafka`)";

impl Scheme {
    /// The transport `url` names, or an error that lists the ones jetflow has.
    pub(crate) fn of(url: &str) -> Result<Scheme, ConnectError> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "nats" | "tls" | "ws" | "wss" => Ok(Scheme::Nats),
            // a bare `host:port` is a NATS URL, as async-nats reads it
            "" => Ok(Scheme::Nats),
            "memory" => Ok(Scheme::Memory),
            #[cfg(feature = "redis")]
            "redis" => Ok(Scheme::Redis),
            #[cfg(not(feature = "redis"))]
            "redis" => Err(ConnectError::new(
                url,
                ConnectErrorKind::MissingFeature,
                "Redis Streams need jetflow's `redis` feature: \
                 `jetflow = { version = \"0.1\", features = [\"redis\"] }`",
                None,
            )),
            #[cfg(feature = "rabbitmq")]
            "amqp" => Ok(Scheme::RabbitMq),
            #[cfg(not(feature = "rabbitmq"))]
            "amqp" => Err(ConnectError::new(
                url,
                ConnectErrorKind::MissingFeature,
                "RabbitMQ needs jetflow's `rabbitmq` feature: \
                 `jetflow = { version = \"0.1\", features = [\"rabbitmq\"] }`",
                None,
            )),
            "amqps" => Err(ConnectError::new(
                url,
                ConnectErrorKind::UnknownScheme,
                "TLS to RabbitMQ (`amqps://`) is not built into jetflow yet; connect through a local \
                 TLS tunnel (stunnel, a sidecar) with `amqp://`",
                None,
            )),
            #[cfg(feature = "kafka")]
            "kafka" => Ok(Scheme::Kafka),
            #[cfg(not(feature = "kafka"))]
            "kafka" => Err(ConnectError::new(
                url,
                ConnectErrorKind::MissingFeature,
                "Kafka needs jetflow's `kafka` feature: \
                 `jetflow = { version = \"0.1\", features = [\"kafka\"] }`",
                None,
            )),
            "rediss" => Err(ConnectError::new(
                url,
                ConnectErrorKind::UnknownScheme,
                "TLS to Redis (`rediss://`) is not built into jetflow yet; connect through a local \
                 TLS tunnel (stunnel, a sidecar) with `redis://`",
                None,
            )),
            other => Err(ConnectError::new(
                url,
                ConnectErrorKind::UnknownScheme,
                format!("unknown URL scheme `{other}://`; jetflow connects to {KNOWN}"),
                None,
            )),
        }
    }
}

/// `url` without its secret (`redis://user:secret@host` -> `redis://user:***@host`,
/// `nats://token@host` -> `nats://***@host`), for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        // `user:password@`: keep the user; a lone `token@` is the secret itself
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://***@{host}{path}"),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(Scheme::of("nats://127.0.0.1:4222").unwrap(), Scheme::Nats);
        assert_eq!(Scheme::of("TLS://host:4222").unwrap(), Scheme::Nats);
        assert_eq!(Scheme::of("127.0.0.1:4222").unwrap(), Scheme::Nats);
        assert_eq!(Scheme::of("memory://x").unwrap(), Scheme::Memory);
        let err = Scheme::of("mqtt://u:pw@h:1883").unwrap_err().to_string();
        assert!(err.contains("unknown URL scheme `mqtt://`"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        #[cfg(feature = "kafka")]
        assert_eq!(Scheme::of("kafka://h:9092").unwrap(), Scheme::Kafka);
        #[cfg(not(feature = "kafka"))]
        assert!(
            Scheme::of("kafka://h:9092")
                .unwrap_err()
                .to_string()
                .contains("`kafka` feature")
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://u:s3cret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://t0ken@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact("nats://u:pw@a:4222,nats://u:pw@b:4222"),
            "nats://u:***@a:4222,nats://u:***@b:4222"
        );
    }
}
