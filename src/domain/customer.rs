//! Customers: the stored record, its typed view, consent and opt-outs.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Category, Channel, CustomerId, DataError, EmailAddress, Locale, Money, OptOutScope, PhoneE164,
    PushToken, TimeZoneName,
};

/// The stored customer record: the JSON objects events carried, merged in arrival order.
///
/// Merging follows JSON Merge Patch (RFC 7396): a field an event sends replaces the stored one,
/// a field it leaves out is kept, `null` removes it. So a backend that sends only
/// `{"id","phone"}` updates the phone without wiping the rest.
///
/// Held as a `Value` (always an object) so typed views and templates borrow it without a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerDoc(Value);

impl Default for CustomerDoc {
    fn default() -> Self {
        Self(Value::Object(Map::new()))
    }
}

impl CustomerDoc {
    /// A record from stored JSON.
    pub fn from_object(object: Map<String, Value>) -> Self {
        Self(Value::Object(object))
    }

    /// Applies an inline customer object on top of this record.
    pub fn merge(&mut self, patch: &Map<String, Value>) {
        if let Value::Object(target) = &mut self.0 {
            merge_patch(target, patch);
        }
    }

    /// The record's fields.
    pub fn as_object(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.0
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// The record as a JSON value, for storage and templates.
    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(existing) = slot {
                    merge_patch(existing, inner);
                } else {
                    *slot = value.clone();
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Per-channel consent as the shop's backend reports it. `None` means the customer said nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Consent {
    /// Text messages.
    pub sms: Option<bool>,
    /// E-mail.
    pub email: Option<bool>,
    /// Push notifications.
    pub push: Option<bool>,
    /// Promotional messages on any channel.
    pub marketing: Option<bool>,
}

impl Consent {
    /// Whether a message of `category` may go on `channel`. Service messages need only that the
    /// channel was not refused (a customer who gave a phone number for their order expects to
    /// hear about it there); marketing needs an explicit yes.
    pub fn allows(&self, channel: Channel, category: Category) -> bool {
        let channel_consent = match channel {
            Channel::Sms => self.sms,
            Channel::Email => self.email,
            Channel::Push => self.push,
        };
        if channel_consent == Some(false) {
            return false;
        }
        match category {
            Category::Transactional => true,
            Category::Marketing => self.marketing == Some(true),
        }
    }
}

/// The opt-outs a customer sent, per channel, the widest scope kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptOuts(BTreeMap<Channel, OptOutScope>);

impl OptOuts {
    /// Records an opt-out; an `all` never narrows back to `marketing`.
    pub fn record(&mut self, channel: Channel, scope: OptOutScope) {
        let entry = self.0.entry(channel).or_insert(scope);
        *entry = (*entry).max(scope);
    }

    /// Whether a message of `category` on `channel` is blocked.
    pub fn blocks(&self, channel: Channel, category: Category) -> bool {
        match self.0.get(&channel) {
            Some(OptOutScope::All) => true,
            Some(OptOutScope::Marketing) => category == Category::Marketing,
            None => false,
        }
    }

    /// Each channel and its scope.
    pub fn iter(&self) -> impl Iterator<Item = (Channel, OptOutScope)> + '_ {
        self.0.iter().map(|(c, s)| (*c, *s))
    }
}

/// The record's field forewarn writes when mail to the customer bounces: the address that
/// bounced. It stays unusable while the record still gives it; a new address is used at once.
pub const BOUNCED_EMAIL: &str = "bounced_email";

/// A typed view of a [`CustomerDoc`]: what forewarn needs to reach the customer.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Id.
    pub id: CustomerId,
    /// Display name.
    pub name: Option<String>,
    /// Language for templates.
    pub locale: Option<Locale>,
    /// Time zone for dates and quiet hours.
    pub timezone: Option<TimeZoneName>,
    /// E-mail address; none while the one on record is the one that bounced.
    pub email: Option<EmailAddress>,
    /// The address on record bounced ([`BOUNCED_EMAIL`]): no e-mail until the record gives
    /// another.
    pub email_bounced: bool,
    /// Mobile number.
    pub phone: Option<PhoneE164>,
    /// App tokens.
    pub push_tokens: Vec<PushToken>,
    /// The customer's own channel order, used for `preferred` in rules.
    pub channels: Vec<Channel>,
    /// Consent as reported.
    pub consent: Consent,
    /// Marketing segment.
    pub segment: Option<String>,
    /// Region, e.g. `kr-seoul`.
    pub region: Option<String>,
    /// Lifetime value.
    pub lifetime_value: Option<Money>,
}

#[derive(Deserialize)]
struct CustomerView {
    id: CustomerId,
    name: Option<String>,
    locale: Option<Locale>,
    timezone: Option<TimeZoneName>,
    email: Option<EmailAddress>,
    phone: Option<PhoneE164>,
    #[serde(default)]
    push_tokens: Vec<PushToken>,
    #[serde(default)]
    channels: Vec<Channel>,
    #[serde(default)]
    consent: Consent,
    segment: Option<String>,
    region: Option<String>,
    #[serde(default, deserialize_with = "super::contact::stored_amount")]
    lifetime_value: Option<Money>,
}

impl Customer {
    /// Reads the typed fields of a record. Inline objects are validated before they are merged,
    /// so this fails only on records written by something other than forewarn.
    pub fn from_doc(doc: &CustomerDoc) -> Result<Self, DataError> {
        let view: CustomerView =
            serde_path_to_error::deserialize(&doc.0).map_err(|e| DataError {
                field: format!("customer.{}", e.path()),
                message: e.inner().to_string(),
            })?;
        let bounced = doc.as_object().get(BOUNCED_EMAIL).and_then(Value::as_str);
        let email_bounced = view
            .email
            .as_ref()
            .is_some_and(|e| Some(e.as_str()) == bounced);
        Ok(Customer {
            id: view.id,
            name: view.name,
            locale: view.locale,
            timezone: view.timezone,
            email: view.email.filter(|_| !email_bounced),
            email_bounced,
            phone: view.phone,
            push_tokens: view.push_tokens,
            channels: view.channels,
            consent: view.consent,
            segment: view.segment,
            region: view.region,
            lifetime_value: view.lifetime_value,
        })
    }

    /// Whether the customer can be reached on `channel` at all.
    pub fn has_address_for(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => self.phone.is_some(),
            Channel::Email => self.email.is_some(),
            Channel::Push => !self.push_tokens.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_partial_update_keeps_what_it_does_not_mention() {
        let mut doc = CustomerDoc::from_object(object(json!({
            "id":"c-1","phone":"+821012345678","consent":{"sms":true,"email":true}})));
        doc.merge(&object(
            json!({"id":"c-1","email":"a@example.com","consent":{"sms":false}}),
        ));
        let customer = Customer::from_doc(&doc).unwrap();
        assert_eq!(customer.phone.unwrap().as_str(), "+821012345678");
        assert_eq!(customer.consent.sms, Some(false));
        assert_eq!(customer.consent.email, Some(true));
    }

    #[test]
    fn null_removes_a_field() {
        let mut doc = CustomerDoc::from_object(object(json!({"id":"c-1","phone":"+821012345678"})));
        doc.merge(&object(json!({"id":"c-1","phone":null})));
        assert!(Customer::from_doc(&doc).unwrap().phone.is_none());
    }

    #[test]
    fn marketing_needs_an_explicit_yes_but_service_messages_do_not() {
        let consent = Consent {
            sms: Some(true),
            ..Consent::default()
        };
        assert!(consent.allows(Channel::Sms, Category::Transactional));
        assert!(consent.allows(Channel::Email, Category::Transactional));
        assert!(!consent.allows(Channel::Sms, Category::Marketing));
        let refused = Consent {
            sms: Some(false),
            marketing: Some(true),
            ..Consent::default()
        };
        assert!(!refused.allows(Channel::Sms, Category::Transactional));
    }

    #[test]
    fn an_opt_out_from_everything_is_not_narrowed_by_a_later_marketing_one() {
        let mut opt_outs = OptOuts::default();
        opt_outs.record(Channel::Sms, OptOutScope::All);
        opt_outs.record(Channel::Sms, OptOutScope::Marketing);
        assert!(opt_outs.blocks(Channel::Sms, Category::Transactional));
        assert!(!opt_outs.blocks(Channel::Email, Category::Transactional));
    }
}
