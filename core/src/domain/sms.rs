//! SMS fallback and replies: the message's life, Twilio's delivery statuses, and what a reply means.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// Twilio's `MessageStatus` for an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Canceled,
    Read,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 10] = [
        Self::Accepted,
        Self::Scheduled,
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
        Self::Canceled,
        Self::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| ParseError::new("MessageStatus", s))
    }

    /// Order of the life of a message, so callbacks apply in any order and only forward. The terminal
    /// ones share the top rank: the first to arrive wins (Twilio sends one of them).
    pub fn rank(self) -> i16 {
        match self {
            Self::Accepted | Self::Scheduled => 1,
            Self::Queued => 2,
            Self::Sending => 3,
            Self::Sent => 4,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Canceled => 5,
            Self::Read => 6,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() >= 5
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stop words: Twilio's standard opt-out keywords, and the Japanese ones we accept (see README,
/// "SMS fallback"). Compared after [`normalize_reply`].
pub const STOP_WORDS: [&str; 14] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "停止",
    "配信停止",
    "送信停止",
    "ストップ",
    "受信拒否",
    "解除",
];

/// A reply as a customer types it, made comparable: full-width ASCII (ＳＴＯＰ, １) folded to ASCII,
/// upper case, surrounding spaces and closing punctuation (。！!.) removed.
pub fn normalize_reply(body: &str) -> String {
    let folded: String = body
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect();
    folded.trim().trim_end_matches(['。', '！', '!', '.', '、', ',']).trim().to_uppercase()
}

pub fn is_stop_word(body: &str) -> bool {
    let n = normalize_reply(body);
    STOP_WORDS.contains(&n.as_str())
}

/// What an inbound text means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A stop word: the number goes on the DNC list.
    Stop,
    /// One of the campaign's reply codes: the code as configured and the result it records.
    Code { code: &'a str, result: &'a str },
    /// Anything else: kept, answered with the campaign's help.
    Other,
}

/// Reads a reply against a campaign's reply codes (compared normalized too, so "１" is "1").
pub fn read_reply<'a>(body: &str, codes: &'a std::collections::BTreeMap<String, String>) -> Reply<'a> {
    let n = normalize_reply(body);
    if STOP_WORDS.contains(&n.as_str()) {
        return Reply::Stop;
    }
    codes
        .iter()
        .find(|(code, _)| normalize_reply(code) == n)
        .map(|(code, result)| Reply::Code { code, result })
        .unwrap_or(Reply::Other)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn replies_are_read_as_people_type_them() {
        let codes = BTreeMap::from([("1".to_string(), "reschedule:morning".to_string())]);
        for stop in ["STOP", "stop", " Stop. ", "ＳＴＯＰ", "停止", "配信停止。", "ストップ", "unsubscribe"]
        {
            assert_eq!(read_reply(stop, &codes), Reply::Stop, "{stop:?}");
        }
        for one in ["1", " 1 ", "１", "1。"] {
            assert_eq!(read_reply(one, &codes), Reply::Code { code: "1", result: "reschedule:morning" }, "{one:?}");
        }
        for other in ["2", "stop please", "", "hello"] {
            assert_eq!(read_reply(other, &codes), Reply::Other, "{other:?}");
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Queued.rank() < Sent.rank() && Sent.rank() < Delivered.rank());
        assert_eq!(Delivered.rank(), Undelivered.rank());
        assert!(Failed.is_final() && !Sent.is_final());
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()).unwrap(), s);
        }
    }
}
