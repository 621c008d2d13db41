//! Everything that arrives from outside, parsed before any AWS call: what account-lifecycle
//! takes ([`lifecycle`]: Control Tower lifecycle events and onboard requests), what the
//! reconciler takes ([`reconcile`]: a schedule, an on-demand request, a change event, the
//! coalescing queue's records) and the change-event queue's batches ([`change`]). Parsing is
//! pure: bad input becomes `Error::InvalidInput` naming the field, and an event is a claim the
//! run re-reads the truth for. This module depends on no module that acts (engine, reconcile,
//! changes): they depend on it.

pub(crate) mod change;
pub(crate) mod lifecycle;
pub(crate) mod reconcile;

pub(crate) use change::{parse_batch, Item};
pub(crate) use lifecycle::GRANT_CHANGE_REASON;
pub use lifecycle::{
    parse_body, parse_request, ActivationMark, Explicit, OnboardRequest, Request, Trigger, Work,
};
pub(crate) use reconcile::{Departure, GrantHint, Scope, ScopeDefaults, COALESCED_BODY};
