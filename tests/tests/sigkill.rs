//! SIGKILL to one of two replicas (`App::run` in child processes)
//! mid-handler: nothing it held is settled, so after the ack wait (2 s)
//! every message it had started or buffered comes back to the other
//! replica; nothing is lost, and a message is handled twice only as a
//! redelivery (its ack died with the process). On Kafka the dead member's
//! partitions go to the other once the group's session timeout drops it,
//! from the committed offsets, which never pass an unfinished record.

use std::collections::{BTreeMap, BTreeSet};

use jetflow::App;
use jetflow::idempotency::{PostgresStore, RedisStore};
use jetflow_tests::service::{
    Chores, LEDGER_POSTGRES_URL, LEDGER_REDIS_URL, Service, Step, brief_chore, ledger_chore,
    provision_and_fill, provision_and_fill_on, redis_chore, unbuffered_chore,
};
use jetflow_tests::{WAIT, eventually, server};

const N: u64 = 40;
const CHILD: &str = env!("CARGO_BIN_EXE_chore-service");

#[tokio::test]
async fn sigkill_mid_handler_the_other_replica_gets_its_messages_after_ack_wait() {
    let server = server().await;
    provision_and_fill(&server.url(), brief_chore, N).await;

    let doomed = Service::spawn(CHILD, &server.url(), Chores::Brief);
    doomed.wait_handled(4).await;
    let survivor = Service::spawn(CHILD, &server.url(), Chores::Brief);
    let (started, handled_before) = doomed.kill().await;
    let finished: BTreeSet<u64> = handled_before.iter().map(|s| s.seq).collect();
    let cut_off: Vec<&Step> = started
        .iter()
        .filter(|s| !finished.contains(&s.seq))
        .collect();
    assert!(
        (finished.len() as u64) < N,
        "the kill came mid-run ({} handled)",
        finished.len()
    );

    eventually(
        WAIT,
        "every event handled by one replica or the other",
        || async {
            let all: BTreeSet<u64> = finished
                .iter()
                .copied()
                .chain(survivor.handled().iter().map(|s| s.seq))
                .collect();
            (all.len() as u64 == N).then_some(())
        },
    )
    .await;
    let handled_after = survivor.terminate().await;

    let mut by_seq: BTreeMap<u64, Vec<&Step>> = BTreeMap::new();
    for s in handled_before.iter().chain(&handled_after) {
        by_seq.entry(s.seq).or_default().push(s);
    }
    assert_eq!(by_seq.len() as u64, N, "nothing lost");
    for (seq, steps) in &by_seq {
        let mut deliveries: Vec<u64> = steps.iter().map(|s| s.delivered).collect();
        deliveries.sort_unstable();
        deliveries.dedup();
        assert_eq!(
            deliveries.len(),
            steps.len(),
            "#{seq} handled twice on the same delivery: {steps:?}"
        );
    }
    for s in &cut_off {
        let redelivered = handled_after
            .iter()
            .find(|h| h.seq == s.seq)
            .unwrap_or_else(|| panic!("#{} cut off by the kill was never handled again", s.seq));
        assert!(
            redelivered.delivered > s.delivered,
            "#{} came back as a redelivery after the ack wait: {redelivered:?}",
            s.seq
        );
    }
    eprintln!(
        "sigkill: {} handled before the kill, {} cut off mid-handler, {} handled by the survivor",
        handled_before.len(),
        cut_off.len(),
        handled_after.len()
    );
}

/// The same kill with the Postgres idempotency store: the doomed replica
/// dies between its effect and the commit for the events it was handling,
/// so their effects roll back with their claims; every event ends with
/// exactly one effect row.
#[tokio::test]
async fn sigkill_with_the_postgres_store_leaves_one_effect_per_event() {
    let server = server().await;
    let pg = jetflow_tests::postgres_server().await;
    let pool = sqlx::PgPool::connect(&pg.url()).await.expect("connect");
    sqlx::query("CREATE TABLE effects (key text NOT NULL)")
        .execute(&pool)
        .await
        .expect("effects table");
    // The provisioning app migrates the store's tables before the first
    // child starts.
    let store = PostgresStore::new(&pg.url()).expect("a postgres URL");
    let app = App::new("chore-service")
        .url(server.url())
        .idempotency_store(store)
        .handler(ledger_chore);
    provision_and_fill_on(app, N).await;

    let env = [(LEDGER_POSTGRES_URL, pg.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let doomed = Service::spawn_with(CHILD, &server.url(), Chores::Ledger, &env);
    doomed.wait_handled(4).await;
    let survivor = Service::spawn_with(CHILD, &server.url(), Chores::Ledger, &env);
    let (started, handled_before) = doomed.kill().await;
    let finished: BTreeSet<u64> = handled_before.iter().map(|s| s.seq).collect();
    let cut_off = started
        .iter()
        .filter(|s| !finished.contains(&s.seq))
        .count();
    assert!(cut_off > 0, "the kill came mid-handler: {started:?}");

    let counts = eventually(WAIT, "every event has its effect", || async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, count(*) FROM effects GROUP BY key")
                .fetch_all(&pool)
                .await
                .expect("effects");
        (rows.len() as u64 == N).then_some(rows)
    })
    .await;
    let handled_after = survivor.terminate().await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "more than one effect: {twice:?}");
    // Handled lines can repeat (a handler that printed `handled` and was
    // killed before its commit runs again), effects cannot.
    eprintln!(
        "sigkill + postgres: {} handled before the kill, {cut_off} cut off mid-handler, {} handled by the survivor, {} effects",
        handled_before.len(),
        handled_after.len(),
        counts.len()
    );
}

/// The same kill with the Redis idempotency store, which is not atomic
/// with the effect: an event the doomed replica had started (its effect
/// done, not yet marked) runs again once its claim expires — two effects,
/// the documented window; every other event has exactly one.
#[tokio::test]
async fn sigkill_with_the_redis_store_repeats_only_the_events_in_the_window() {
    let server = server().await;
    let redis = jetflow_tests::redis_server().await;
    let store = RedisStore::new(&redis.url()).expect("a redis URL");
    let app = App::new("chore-service")
        .url(server.url())
        .idempotency_store(store)
        .handler(redis_chore);
    provision_and_fill_on(app, N).await;

    let env = [(LEDGER_REDIS_URL, redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let doomed = Service::spawn_with(CHILD, &server.url(), Chores::RedisLedger, &env);
    doomed.wait_handled(4).await;
    let survivor = Service::spawn_with(CHILD, &server.url(), Chores::RedisLedger, &env);
    let (started_before, handled_before) = doomed.kill().await;
    let finished: BTreeSet<&str> = handled_before.iter().map(|s| s.key.as_str()).collect();
    let cut_off: BTreeSet<&str> = started_before
        .iter()
        .map(|s| s.key.as_str())
        .filter(|k| !finished.contains(k))
        .collect();
    assert!(
        !cut_off.is_empty(),
        "the kill came mid-handler: {started_before:?}"
    );

    eventually(
        WAIT,
        "every event handled by one replica or the other",
        || async {
            let all: BTreeSet<String> = handled_before
                .iter()
                .chain(&survivor.handled())
                .map(|s| s.key.clone())
                .collect();
            (all.len() as u64 == N).then_some(())
        },
    )
    .await;
    let started_after = survivor.started();
    survivor.terminate().await;

    // Effects = `started` lines (the effect comes first in the handler).
    let mut effects: BTreeMap<&str, usize> = BTreeMap::new();
    for s in started_before.iter().chain(&started_after) {
        *effects.entry(s.key.as_str()).or_default() += 1;
    }
    assert_eq!(effects.len() as u64, N, "nothing lost: {effects:?}");
    for (key, n) in &effects {
        if cut_off.contains(key) {
            assert_eq!(
                *n, 2,
                "{key} was in the window: it runs again ({effects:?})"
            );
        } else if !finished.contains(key) {
            assert_eq!(
                *n, 1,
                "{key} never reached the doomed replica ({effects:?})"
            );
        } else {
            // handled before the kill: once, or twice if the kill fell
            // between `handled` and the done mark (the same window)
            assert!(*n <= 2, "{key}: {effects:?}");
        }
    }
    eprintln!(
        "sigkill + redis: {} handled before the kill, {} cut off in the window, {} effects in all",
        finished.len(),
        cut_off.len(),
        effects.values().sum::<usize>()
    );
}

/// Events of the Kafka kill: enough that the doomed member still has
/// records of its own partitions left when the survivor has joined and
/// handled its first four.
const KAFKA_N: u64 = 300;
/// Partitions of the Kafka topic: both members own some when the kill comes.
const KAFKA_PARTITIONS: u32 = 4;

/// How many times a child's log (`jetflow::transport::kafka` at debug)
/// says the group assigned it partitions.
fn kafka_assignments(logs: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("kafka partitions assigned"))
        .count()
}

/// The kill on Kafka (a private tansu broker, a topic of 4 partitions).
/// The survivor joins the group and handles its first records, so both
/// members own partitions; then the doomed one is SIGKILLed mid-handler.
/// Its partitions go to the survivor once the group's session timeout
/// (10 s) drops it, and are read from the committed offsets: every record
/// it had started and not finished comes again, so no offset was committed
/// past an unfinished record. Nothing is lost.
///
/// The handler has `prefetch = 0`: the doomed member then holds only
/// the records it runs, commits each partition's records as it finishes
/// them, and the kill cuts off running records, so it tests the
/// watermark (with a buffer of 256 it would work through most of the 300
/// before the survivor's join settles).
///
/// The delivery count lives in the member (a record fetched again after a
/// reassignment counts from 1), so a record one replica handles twice must
/// be explained: a retry (a higher count; this handler never fails) or a
/// reassignment (its log shows the group assigned it partitions more than
/// once).
#[tokio::test]
async fn sigkill_on_kafka_commits_no_offset_past_an_unfinished_record() {
    if jetflow_tests::skip_on_nats_floor(
        "sigkill_on_kafka_commits_no_offset_past_an_unfinished_record",
    ) {
        return;
    }
    let server = jetflow_tests::kafka_server().await;
    let url = format!("{}?partitions={KAFKA_PARTITIONS}", server.url());
    provision_and_fill(&url, unbuffered_chore, KAFKA_N).await;

    let env = [("RUST_LOG", "jetflow::transport::kafka=debug,info")];
    let doomed = Service::spawn_with(CHILD, &url, Chores::Unbuffered, &env);
    doomed.wait_handled(4).await;
    let survivor = Service::spawn_with(CHILD, &url, Chores::Unbuffered, &env);
    // a handler's time after the survivor's first: what the doomed held of
    // partitions the join took from it is finished by then
    survivor.wait_handled(4).await;
    let (started, handled_before, doomed_logs) = doomed.kill_with_logs().await;
    let killed_at = std::time::Instant::now();
    let finished: BTreeSet<&str> = handled_before.iter().map(|s| s.key.as_str()).collect();
    let cut_off: BTreeSet<&str> = started
        .iter()
        .map(|s| s.key.as_str())
        .filter(|k| !finished.contains(k))
        .collect();
    assert!(
        (finished.len() as u64) < KAFKA_N,
        "the kill came mid-run ({} handled)",
        finished.len()
    );
    assert!(
        !cut_off.is_empty(),
        "the kill came mid-handler: {started:?}"
    );

    // until every event was handled by one replica or the other, at most
    // WAIT; what is missing then is told by the assertions below
    let everything = || {
        handled_before
            .iter()
            .chain(&survivor.handled())
            .map(|s| s.key.clone())
            .collect::<BTreeSet<String>>()
            .len() as u64
            == KAFKA_N
    };
    while !everything() && killed_at.elapsed() < WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let recovered_in = killed_at.elapsed();
    let (handled_after, survivor_logs) = survivor.terminate_with_logs().await;

    let again: BTreeSet<&str> = handled_after.iter().map(|s| s.key.as_str()).collect();
    let not_again: Vec<&&str> = cut_off.iter().filter(|k| !again.contains(*k)).collect();
    assert!(
        not_again.is_empty(),
        "cut off by the kill and not handled again within {WAIT:?} (an offset was committed past them): {not_again:?}"
    );
    let all: BTreeSet<&str> = handled_before
        .iter()
        .chain(&handled_after)
        .map(|s| s.key.as_str())
        .collect();
    let lost: Vec<String> = (0..KAFKA_N)
        .map(|i| format!("chore-{i}"))
        .filter(|k| !all.contains(k.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "nothing lost, yet within {WAIT:?} these were not handled: {lost:?}"
    );

    let mut repeats = [0; 2];
    let replicas = [
        ("doomed", &handled_before, &doomed_logs),
        ("survivor", &handled_after, &survivor_logs),
    ];
    for (i, (name, handled, logs)) in replicas.into_iter().enumerate() {
        let mut by_key: BTreeMap<&str, Vec<&Step>> = BTreeMap::new();
        for s in handled {
            by_key.entry(s.key.as_str()).or_default().push(s);
        }
        let assigned = kafka_assignments(logs);
        assert!(assigned >= 1, "the {name} logged its assignment:\n{logs}");
        for (key, steps) in by_key.into_iter().filter(|(_, s)| s.len() > 1) {
            repeats[i] += steps.len() - 1;
            let mut deliveries: Vec<u64> = steps.iter().map(|s| s.delivered).collect();
            deliveries.sort_unstable();
            deliveries.dedup();
            // a retry counts up; a record fetched again after a
            // reassignment starts from 1 again
            assert!(
                deliveries.len() == steps.len() || assigned > 1,
                "the {name} handled {key} twice on the same delivery without a reassignment: {steps:?}"
            );
        }
    }
    eprintln!(
        "sigkill on kafka: {} of {KAFKA_N} handled before the kill, {} cut off mid-handler (each handled again by the survivor), {} handled by the survivor ({} of them finished by the doomed too), all handled {:.1} s after the kill; repeats on one replica: doomed {}, survivor {}; assignments: doomed {}, survivor {}",
        finished.len(),
        cut_off.len(),
        handled_after.len(),
        again.intersection(&finished).count(),
        recovered_in.as_secs_f64(),
        repeats[0],
        repeats[1],
        kafka_assignments(&doomed_logs),
        kafka_assignments(&survivor_logs),
    );
}
