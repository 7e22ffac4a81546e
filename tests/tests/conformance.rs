//! Runs every scenario of [`jetflow_tests::conformance`] once per transport
//! of [`TRANSPORTS`](jetflow_tests::conformance::TRANSPORTS): `nats::*` on a
//! private nats-server, `memory::*` on the embedded broker, `redis::*` on a
//! private redis-server, `rabbitmq::*` on a vhost of a private
//! rabbitmq-server node, `kafka::*` on a private tansu broker.

use std::time::Duration;

use jetflow_tests::conformance::{self as c, Broker, Kind};

/// The most one scenario may take (its waits are bounded by
/// `jetflow_tests::WAIT` each; this bounds the whole).
const LIMIT: Duration = Duration::from_secs(300);

/// One module per transport, one test per scenario.
macro_rules! conformance {
    ($($transport:ident => $kind:expr),* ; $scenarios:tt) => {
        $( scenarios!($transport, $kind, $scenarios); )*
    };
}

macro_rules! scenarios {
    ($transport:ident, $kind:expr, [$($scenario:ident),* $(,)?]) => {
        mod $transport {
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    // the nats-server floor pass runs the JetStream column only
                    if $kind != Kind::Nats
                        && jetflow_tests::skip_on_nats_floor(stringify!($scenario))
                    {
                        return;
                    }
                    let name = concat!(stringify!($transport), "::", stringify!($scenario));
                    jetflow_tests::run_bounded(name, LIMIT, async {
                        c::$scenario(Broker::new($kind, stringify!($scenario)).await).await;
                    });
                }
            )*
        }
    };
}

conformance!(
    nats => Kind::Nats,
    memory => Kind::Memory,
    redis => Kind::Redis,
    rabbitmq => Kind::RabbitMq,
    kafka => Kind::Kafka;
    [
        payload_and_headers_intact,
        lean_wire_profile_keeps_the_event_id,
        parallel_publishers_all_received,
        batch_publish_pipelined,
        subjects_are_isolated,
        nak_then_redelivery,
        undecodable_payload_dead_lettered_without_retry,
        hostile_payloads_dead_lettered_without_calling,
        oversized_publish_refused_before_sending,
        full_stream_refusal_reaches_the_publisher,
        panic_caught_and_retried_while_others_flow,
        ack_wait_expiry_redelivers,
        max_deliver_then_dlq,
        dlq_refused_at_last_delivery_is_not_stranded,
        dlq_replay_once_unless_forced,
        term_stops_redelivery,
        in_progress_keeps_one_delivery,
        groups_fan_out,
        replicas_compete,
        close_and_reopen_loses_nothing,
        deleted_stream_is_recreated,
        order_preserved_with_one_worker,
        prefetched_messages_never_expire,
        stop_gives_the_buffer_back,
        ordered_lanes_keep_per_key_order,
        notification_broadcast,
        notification_queue_group,
        notification_retried_in_process,
        notification_disconnected_publish_fails,
    ]
);

/// The README's capability table is the one the transports declare.
#[test]
fn readme_capability_table_matches_the_transports() {
    let table = jetflow::transport::Capabilities::markdown_table(
        &c::TRANSPORTS
            .iter()
            .map(|(_, name, caps)| (*name, *caps))
            .collect::<Vec<_>>(),
    );
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&table),
        "README.md must contain this capability table (generated from the transports' CAPABILITIES):\n\n{table}"
    );
}
