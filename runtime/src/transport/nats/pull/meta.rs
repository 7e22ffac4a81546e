//! The delivery metadata JetStream puts in a message's reply subject.

use time::OffsetDateTime;

/// The delivery metadata JetStream puts in a message's reply subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`,
/// or with `<domain>.<account hash>` after `ACK` (and a token at the end)
/// on newer servers.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AckMeta {
    pub(super) delivered: u64,
    pub(super) stream_sequence: u64,
    pub(super) consumer_sequence: u64,
    pub(super) published: OffsetDateTime,
}

impl AckMeta {
    pub(super) fn parse(reply: &str) -> Option<AckMeta> {
        // no allocation: this runs once per message
        let mut tokens = [""; 12];
        let mut n = 0;
        for token in reply.split('.') {
            if n < tokens.len() {
                tokens[n] = token;
            }
            n += 1;
        }
        if tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        // v1: 9 tokens; v2: domain and account hash after `ACK`, 11 or more.
        let at = match n {
            9 => 4,
            n if n >= 11 => 6,
            _ => return None,
        };
        let number = |i: usize| tokens[at + i].parse::<u64>().ok();
        let nanos = i128::from(number(3)?);
        Some(AckMeta {
            delivered: number(0)?,
            stream_sequence: number(1)?,
            consumer_sequence: number(2)?,
            published: OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_reply_formats() {
        let v1 = AckMeta::parse("$JS.ACK.ORDER.inv--order.2.17.40.1700000000123456789.5").unwrap();
        assert_eq!(
            (v1.delivered, v1.stream_sequence, v1.consumer_sequence),
            (2, 17, 40)
        );
        assert_eq!(v1.published.unix_timestamp(), 1_700_000_000);
        let v2 =
            AckMeta::parse("$JS.ACK.hub.ACCHASH.ORDER.inv--order.1.3.4.1700000000000000000.0.xyz")
                .unwrap();
        assert_eq!(
            (v2.delivered, v2.stream_sequence, v2.consumer_sequence),
            (1, 3, 4)
        );
        assert!(AckMeta::parse("$JS.ACK.ORDER.x.1.2").is_none());
        assert!(AckMeta::parse("_INBOX.abc.def.1.2.3.4.5.6").is_none());
    }
}
