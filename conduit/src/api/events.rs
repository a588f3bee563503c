//! `GET /v1/events/recent`: the events still kept for replay, as one document (what a
//! page shows as history before its stream starts).

use serde::{Deserialize, Serialize};

use crate::events::Event;

/// The most recent events of the asked types, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventList {
    /// The events.
    pub events: Vec<Event>,
    /// The id of the last event published (whatever its type): `Last-Event-ID` for a
    /// stream that starts exactly where this list ends.
    pub cursor: String,
}
