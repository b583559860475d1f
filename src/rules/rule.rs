//! The rule types and the loaded, immutable rule set.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::Expression;
use crate::domain::{Category, Channel, Customer, EventType};

/// Where something was written: file, line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl Location {
    /// The line and column of byte `offset` in `text`, the contents of `file`.
    pub fn at_offset(file: &std::path::Path, text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location {
            file: file.to_path_buf(),
            line,
            col,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// An offer attached to an outreach.
#[derive(Debug, Clone)]
pub struct OfferSpec {
    /// CEL → number; 0 means no offer.
    pub discount_percent: Expression,
    /// How long an issued code is valid.
    pub valid_days: u32,
}

impl OfferSpec {
    /// `valid_days` when a rule does not say.
    pub const DEFAULT_VALID_DAYS: u32 = 30;
    /// A year: a longer promise is a liability, not an apology.
    pub const MAX_VALID_DAYS: u32 = 366;
}

/// One entry of a rule's `channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelChoice {
    /// The customer's own channel order.
    Preferred,
    /// A named channel.
    Channel(Channel),
}

/// A proactive-outreach rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique, stable id: metrics, idempotency keys and audit use it.
    pub id: String,
    /// Event types it reacts to.
    pub on: Vec<EventType>,
    /// Condition over the event, customer and risk (CEL).
    pub when: Option<Expression>,
    /// Template folder name.
    pub template: String,
    /// Channels in order; the first usable one is used, the rest are fallbacks.
    pub channels: Vec<ChannelChoice>,
    /// Transactional or marketing.
    pub category: Category,
    /// When several rules match one event for one customer, the highest wins.
    pub priority: i32,
    /// At most one outreach of this rule per customer per value (CEL).
    pub once_per: Option<Expression>,
    /// Discount offer.
    pub offer: Option<OfferSpec>,
    /// Where the rule starts.
    pub location: Location,
}

impl Rule {
    /// Whether deciding needs the CEL bindings (`when`, `once_per` or an offer).
    pub fn has_expressions(&self) -> bool {
        self.when.is_some() || self.once_per.is_some() || self.offer.is_some()
    }

    /// The rule's channels for `customer`, with `preferred` expanded to the customer's own order
    /// and duplicates removed (first occurrence wins).
    pub fn channels_for(&self, customer: &Customer) -> Vec<Channel> {
        let mut out: Vec<Channel> = Vec::with_capacity(3);
        for choice in &self.channels {
            let expanded: &[Channel] = match choice {
                ChannelChoice::Preferred => &customer.channels,
                ChannelChoice::Channel(c) => std::slice::from_ref(c),
            };
            for channel in expanded {
                if !out.contains(channel) {
                    out.push(*channel);
                }
            }
        }
        out
    }
}

/// A validated, immutable set of rules, indexed by event type.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_type: HashMap<EventType, Vec<usize>>,
}

impl RuleSet {
    /// Indexes rules; each type's list is sorted by priority (highest first), then id, so the
    /// first match is the winner.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut by_type: HashMap<EventType, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for t in &rule.on {
                by_type.entry(*t).or_default().push(i);
            }
        }
        for list in by_type.values_mut() {
            list.sort_by(|a, b| {
                rules[*b]
                    .priority
                    .cmp(&rules[*a].priority)
                    .then_with(|| rules[*a].id.cmp(&rules[*b].id))
            });
        }
        RuleSet { rules, by_type }
    }

    /// Rules listening to `event_type`, best first.
    pub fn candidates(&self, event_type: EventType) -> impl Iterator<Item = &Rule> {
        self.by_type
            .get(&event_type)
            .into_iter()
            .flatten()
            .map(|i| &self.rules[*i])
    }

    /// The rule with this id.
    pub fn by_id(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
