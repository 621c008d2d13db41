//! One live chain of runs per account (`CHAIN_TABLE`, a DynamoDB table with one item per
//! account). A chain is the runs of one piece of work on an account: its first run, then the
//! delayed re-checks each run queues until the account's grants are ACTIVE. Change events
//! speed a chain up and never start a second one beside it:
//!
//! * every message of a chain carries its sequence number (the SQS message attribute
//!   [`ATTRIBUTE`], so the body stays the format earlier releases read). A run first claims the
//!   account's item with it; a message older than the item's sequence was superseded by a
//!   later message of the same chain and ends there, without any other AWS call;
//! * the item says where the chain is: `queued` (a run is on a queue and will read the
//!   account afresh), `running`, or `waiting` (a delayed re-check is on its way, its body kept
//!   in the item);
//! * a change event for an account whose chain is queued adds nothing; for a running chain it
//!   marks the item, and the run, when it ends, queues its next step at once instead of after
//!   the re-check delay; for a waiting chain it brings the re-check forward once: the same body
//!   (so the same start time, attempt count and lane) sent now with a newer sequence, which
//!   makes the delayed one stale;
//! * the reconciler queues no account whose chain is live, and marks those it queues;
//! * a failed run releases the chain (its item expires at once): its message comes again,
//!   and meanwhile every message and event of the account runs as without chains.
//!
//! Writes follow the sends they describe: an item never names a sequence no message carries,
//! so a lost write can only let two runs through (each reads the account afresh), never drop
//! one. A chain that ends leaves its item, `ended`, until it expires: an older message of it
//! still on a queue is then stale, not a new run. Items expire ([`QUEUED_SECONDS`], [`RUNNING_SECONDS`], [`WAITING_SECONDS`]): a chain
//! whose message was parked or lost stops holding events back.
//!
//! The decisions are pure ([`gate`], [`Item::live`]); `store` makes the calls.

mod store;

pub(crate) use store::{
    claim, end, forward, mark_queued, mark_queued_best_effort, poke, read_or_none, release, wait,
    Claim,
};

/// The SQS message attribute carrying a message's chain sequence number (a Number).
pub(crate) const ATTRIBUTE: &str = "chainSeq";

/// The reason a re-check brought forward carries (its report's trigger says
/// `onboard:early-recheck`); the re-checks it queues are plain `recheck`s again.
pub(crate) const EARLY_RECHECK_REASON: &str = "early-recheck";

/// A waiting re-check's body, to send now: the same request (start time, attempt, lane,
/// activations) with the reason [`EARLY_RECHECK_REASON`]. A body that is not an onboard
/// request is sent as it is.
pub(crate) fn early(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut request)) => {
            request.insert("reason".into(), EARLY_RECHECK_REASON.into());
            serde_json::Value::Object(request).to_string()
        }
        _ => body.to_string(),
    }
}

/// How long a queued chain holds events back: a backfill of 10,000 accounts at License
/// Manager's rate bound (about 2.5 accounts a second) takes about 70 minutes to reach its last
/// account; six hours leave room for a slower one.
pub(crate) const QUEUED_SECONDS: u64 = 6 * 3600;

/// How long a running chain holds events back: longer than a run (the function's timeout is
/// 15 minutes at most) and its message's redelivery after a crash.
pub(crate) const RUNNING_SECONDS: u64 = 3600;

/// How long a waiting chain holds events back beyond its re-check's delay: the re-check may
/// wait behind a backfill on its queue.
pub(crate) const WAITING_SECONDS: u64 = 6 * 3600;

/// Where an account's chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A message is on a queue; its run will read the account afresh.
    Queued,
    /// A run is working the account.
    Running,
    /// A delayed re-check is on its way.
    Waiting,
    /// The chain ended; the item stays until it expires so that an older message of it that
    /// is still on a queue (a re-check brought forward leaves its delayed one behind) is
    /// stale when it comes.
    Ended,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Waiting => "waiting",
            State::Ended => "ended",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(State::Queued),
            "running" => Some(State::Running),
            "waiting" => Some(State::Waiting),
            "ended" => Some(State::Ended),
            _ => None,
        }
    }
}

/// An account's item, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) seq: u64,
    pub(crate) state: State,
    /// Unix seconds after which the item holds nothing back.
    pub(crate) expires: u64,
    /// The waiting re-check's body.
    pub(crate) body: Option<String>,
    /// A change came while the chain was running.
    pub(crate) poked: bool,
}

impl Item {
    /// Whether the item still describes a live chain at `now` (Unix seconds): not ended, not
    /// expired (DynamoDB deletes expired items only eventually, so readers check the time
    /// themselves).
    pub(crate) fn live(&self, now: u64) -> bool {
        self.state != State::Ended && self.expires > now
    }
}

/// What a change event that asks for a run does, given the account's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// No live chain: queue a run, and mark the account's chain queued.
    Start,
    /// The chain covers it; why.
    Skip(&'static str),
    /// The chain is running: mark it (the sequence it runs under), so its run goes on at once.
    Poke(u64),
    /// The chain waits on a delayed re-check: send its body now ([`early`]) under a new
    /// sequence (`seq`: the sequence the item has, which the update is conditional on).
    Forward { seq: u64, body: String },
}

/// The gate for a change event's run: see the module's doc. Pure.
pub(crate) fn gate(item: Option<&Item>, now: u64) -> Gate {
    let Some(item) = item.filter(|i| i.live(now)) else {
        return Gate::Start;
    };
    match (item.state, &item.body) {
        (State::Queued, _) => Gate::Skip("its chain's run is queued and reads the account afresh"),
        (State::Running, _) if item.poked => {
            Gate::Skip("its chain's running run is marked to go on at once already")
        }
        (State::Running, _) => Gate::Poke(item.seq),
        (State::Waiting, Some(body)) => Gate::Forward {
            seq: item.seq,
            body: early(body),
        },
        // A waiting item without its body cannot be brought forward: a new run.
        (State::Waiting, None) | (State::Ended, _) => Gate::Start,
    }
}

/// The gate for an event whose mark on a running chain found the chain moved on (its run
/// ended, or another began), from the item read again. Pure.
///
/// The run may have ended between the event's read and its mark: a waiting chain then has its
/// re-check brought forward and an ended one a new run, as if the event had come a moment
/// later (without this, a completion that met the end of its account's run waited for the
/// 300 s re-check). A chain running again runs a message sent after the event's completion,
/// which it observes: nothing, as for a queued one.
pub(crate) fn gate_after_moved(item: Option<&Item>, now: u64) -> Gate {
    match gate(item, now) {
        Gate::Poke(_) => Gate::Skip("its chain's run began after the change and reads it"),
        other => other,
    }
}

/// Whether the reconciler may queue an account with this item: not while a chain is live.
/// Pure.
pub(crate) fn may_queue(item: Option<&Item>, now: u64) -> bool {
    !item.is_some_and(|i| i.live(now))
}

/// A new sequence number: milliseconds since the Unix epoch at `now`. Later messages of a
/// chain carry larger numbers (runs are seconds apart; Lambda hosts keep their clocks
/// synchronised far closer than that).
pub(crate) fn sequence(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The chain sequence an SQS record carries (its [`ATTRIBUTE`] message attribute), if any.
pub(crate) fn of_record(record: &serde_json::Value) -> Option<u64> {
    record
        .get("messageAttributes")?
        .get(ATTRIBUTE)?
        .get("stringValue")?
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
