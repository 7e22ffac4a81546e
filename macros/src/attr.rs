//! Parsing of the `key = value` options of `#[event(...)]` and `#[handler(...)]`.
//!
//! Only the syntax is checked here (known option, given once, literal of the
//! right kind); what the values mean is checked in `valid.rs`. Parsing never
//! stops at the first mistake: every error goes to the [`Ctxt`].

use proc_macro2::{Delimiter, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Lit, LitBool, LitInt, LitStr, Path};

use crate::ctxt::Ctxt;

/// An option a macro accepts, and how it is written.
pub(crate) struct OptionDef {
    pub(crate) name: &'static str,
    pub(crate) example: &'static str,
    /// Written alone, without `= value`.
    pub(crate) flag: bool,
}

const fn def(name: &'static str, example: &'static str) -> OptionDef {
    OptionDef {
        name,
        example,
        flag: false,
    }
}

const fn flag(name: &'static str) -> OptionDef {
    OptionDef {
        name,
        example: name,
        flag: true,
    }
}

/// Options of `#[event]`.
pub(crate) const EVENT_OPTIONS: &[OptionDef] = &[
    def("version", r#"version = "v1""#),
    def("name", r#"name = "order.created""#),
    def("stream", r#"stream = "ORDERS""#),
    def("id", "id = order_id"),
    def("upcast_from", "upcast_from = OrderCreatedV1"),
    flag("notification"),
    def("crate", "crate = ::jetflow"),
];

/// Options of `#[handler]`.
pub(crate) const HANDLER_OPTIONS: &[OptionDef] = &[
    def("subject", r#"subject = "order.created.v1""#),
    def("group", r#"group = "inventory""#),
    def("max_deliver", "max_deliver = 5"),
    def("backoff", r#"backoff = "1s, 5s, 30s""#),
    def("ack_wait", r#"ack_wait = "30s""#),
    def("concurrency", "concurrency = 8"),
    def("prefetch", "prefetch = 64"),
    def("ordered_by", "ordered_by = customer_id"),
    def("dead_letter", "dead_letter = false"),
    def("deliver", r#"deliver = "new""#),
    flag("broadcast"),
    flag("idempotent"),
    def("crate", "crate = ::jetflow"),
];

/// The options of `#[event(...)]`, as written.
#[derive(Default)]
pub(crate) struct EventAttrs {
    pub(crate) version: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) stream: Option<LitStr>,
    pub(crate) id: Option<Ident>,
    /// The previous version's type.
    pub(crate) upcast_from: Option<Path>,
    /// `notification`, as written.
    pub(crate) notification: Option<Ident>,
    pub(crate) krate: Option<Path>,
    /// Options written, even with a mistake, or misspelled.
    pub(crate) mentioned: Vec<&'static str>,
}

impl EventAttrs {
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut attrs = EventAttrs::default();
        attrs.mentioned = parse_options(cx, "event", EVENT_OPTIONS, tokens, |opt| {
            match opt.def.name {
                "version" => attrs.version = opt.string(cx),
                "name" => attrs.name = opt.string(cx),
                "stream" => attrs.stream = opt.string(cx),
                "id" => attrs.id = opt.ident(cx),
                "upcast_from" => attrs.upcast_from = opt.path(cx, "a type"),
                "notification" => attrs.notification = Some(opt.key),
                _ => attrs.krate = opt.path(cx, "a path to the jetflow crate"),
            }
        });
        attrs
    }
}

/// The options of `#[handler(...)]`, as written.
#[derive(Default)]
pub(crate) struct HandlerAttrs {
    pub(crate) subject: Option<LitStr>,
    pub(crate) group: Option<LitStr>,
    pub(crate) max_deliver: Option<LitInt>,
    pub(crate) backoff: Option<LitStr>,
    pub(crate) ack_wait: Option<LitStr>,
    pub(crate) concurrency: Option<LitInt>,
    pub(crate) prefetch: Option<LitInt>,
    /// The event's field whose value orders its events.
    pub(crate) ordered_by: Option<Ident>,
    pub(crate) dead_letter: Option<LitBool>,
    pub(crate) deliver: Option<LitStr>,
    /// `broadcast`, as written.
    pub(crate) broadcast: Option<Ident>,
    /// `idempotent`, as written.
    pub(crate) idempotent: Option<Ident>,
    pub(crate) krate: Option<Path>,
}

impl HandlerAttrs {
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut attrs = HandlerAttrs::default();
        parse_options(cx, "handler", HANDLER_OPTIONS, tokens, |opt| {
            match opt.def.name {
                "subject" => attrs.subject = opt.string(cx),
                "group" => attrs.group = opt.string(cx),
                "max_deliver" => attrs.max_deliver = opt.int(cx),
                "backoff" => attrs.backoff = opt.string(cx),
                "ack_wait" => attrs.ack_wait = opt.string(cx),
                "concurrency" => attrs.concurrency = opt.int(cx),
                "prefetch" => attrs.prefetch = opt.int(cx),
                "ordered_by" => attrs.ordered_by = opt.ident(cx),
                "dead_letter" => attrs.dead_letter = opt.bool(cx),
                "deliver" => attrs.deliver = opt.string(cx),
                "broadcast" => attrs.broadcast = Some(opt.key),
                "idempotent" => attrs.idempotent = Some(opt.key),
                _ => attrs.krate = opt.path(cx, "a path to the jetflow crate"),
            }
        });
        attrs
    }
}

/// One known option, given once, with its value tokens.
struct RawOption {
    def: &'static OptionDef,
    key: Ident,
    value: TokenStream,
}

impl RawOption {
    fn wrong_kind(&self, cx: &Ctxt, expected: &str) {
        let (name, example) = (self.def.name, self.def.example);
        cx.error_spanned_by(
            &self.value,
            format!("`{name}` expects {expected}, e.g. `{example}`"),
        );
    }

    fn lit(&self) -> Option<Lit> {
        syn::parse2::<Lit>(self.value.clone()).ok()
    }

    fn string(&self, cx: &Ctxt) -> Option<LitStr> {
        match self.lit() {
            Some(Lit::Str(s)) => Some(s),
            _ => {
                self.wrong_kind(cx, "a string literal");
                None
            }
        }
    }

    fn int(&self, cx: &Ctxt) -> Option<LitInt> {
        match self.lit() {
            Some(Lit::Int(i)) => Some(i),
            _ => {
                self.wrong_kind(cx, "a positive integer literal");
                None
            }
        }
    }

    fn bool(&self, cx: &Ctxt) -> Option<LitBool> {
        match self.lit() {
            Some(Lit::Bool(b)) => Some(b),
            _ => {
                self.wrong_kind(cx, "`true` or `false`");
                None
            }
        }
    }

    fn ident(&self, cx: &Ctxt) -> Option<Ident> {
        if let Ok(ident) = syn::parse2::<Ident>(self.value.clone()) {
            return Some(ident);
        }
        if let Some(Lit::Str(s)) = self.lit() {
            let name = self.def.name;
            cx.error_spanned_by(
                s,
                format!(
                    "`{name}` expects a field name without quotes, e.g. `{}`",
                    self.def.example
                ),
            );
        } else {
            self.wrong_kind(cx, "a field name");
        }
        None
    }

    /// A path; `what` names what it points at, for the error.
    fn path(&self, cx: &Ctxt, what: &str) -> Option<Path> {
        if let Ok(path) = syn::parse2::<Path>(self.value.clone()) {
            return Some(path);
        }
        if let Some(Lit::Str(s)) = self.lit() {
            let name = self.def.name;
            cx.error_spanned_by(
                s,
                format!(
                    "`{name}` expects {what} without quotes, e.g. `{}`",
                    self.def.example
                ),
            );
        } else {
            self.wrong_kind(cx, what);
        }
        None
    }
}

/// Splits `a = 1, b = "x"` at top-level commas and passes each known option
/// given once to `on_option`, in source order; every malformed, unknown or
/// repeated option is an error. Returns the options that were mentioned,
/// even with a mistake (`version = 1`, `verison = "v1"`), so that they are
/// not also reported as missing.
fn parse_options(
    cx: &Ctxt,
    macro_name: &str,
    defs: &'static [OptionDef],
    tokens: TokenStream,
    mut on_option: impl FnMut(RawOption),
) -> Vec<&'static str> {
    let mut seen: Vec<&str> = Vec::new();
    let mut mentioned = Vec::new();
    for segment in split_commas(tokens) {
        let mut iter = segment.into_iter();
        let key = match iter.next() {
            None => continue, // a trailing comma
            Some(TokenTree::Ident(key)) => key,
            Some(other) => {
                let mut written = TokenStream::from(other);
                written.extend(iter);
                cx.error_spanned_by(
                    written,
                    format!("expected `option = value`, e.g. `{}`", defs[0].example),
                );
                continue;
            }
        };
        if let Some(def) = defs.iter().find(|d| key == d.name) {
            mentioned.push(def.name);
        }
        let value: TokenStream = match iter.next() {
            Some(TokenTree::Punct(eq)) if eq.as_char() == '=' => iter.collect(),
            Some(other) => {
                cx.error_spanned_by(other, format!("expected `=` after `{key}`"));
                continue;
            }
            None => TokenStream::new(),
        };
        let Some(def) = defs.iter().find(|d| key == d.name) else {
            let names: Vec<&'static str> = defs.iter().map(|d| d.name).collect();
            let list = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let msg = match suggest(&key.to_string(), &names) {
                Some(best) => {
                    mentioned.push(best);
                    format!(
                        "unknown option `{key}` for `#[{macro_name}]`; did you mean `{best}`? expected one of: {list}"
                    )
                }
                None => {
                    format!("unknown option `{key}` for `#[{macro_name}]`; expected one of: {list}")
                }
            };
            cx.error_spanned_by(&key, msg);
            continue;
        };
        if def.flag && !value.is_empty() {
            cx.error_spanned_by(
                &value,
                format!("`{key}` is a flag: write `{key}` alone, without a value"),
            );
            continue;
        }
        if !def.flag && value.is_empty() {
            cx.error_spanned_by(
                &key,
                format!("`{key}` needs a value, e.g. `{}`", def.example),
            );
            continue;
        }
        if seen.contains(&def.name) {
            cx.error_spanned_by(&key, format!("duplicate option `{key}`; give it once"));
            continue;
        }
        seen.push(def.name);
        on_option(RawOption { def, key, value });
    }
    mentioned
}

/// Splits a token stream at top-level `,` (groups are single tokens, so
/// commas inside them do not split).
fn split_commas(tokens: TokenStream) -> Vec<TokenStream> {
    let mut segments = vec![TokenStream::new()];
    for tt in tokens {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => segments.push(TokenStream::new()),
            TokenTree::Group(g) if g.delimiter() == Delimiter::None => {
                // An invisible group (a `$x` from a macro_rules caller): look inside.
                let mut inner = split_commas(g.stream());
                if let (Some(last), Some(first)) = (segments.last_mut(), inner.first_mut()) {
                    last.extend(std::mem::take(first));
                    inner.remove(0);
                }
                segments.extend(inner);
            }
            _ => {
                if let Some(last) = segments.last_mut() {
                    tt.to_tokens(last);
                }
            }
        }
    }
    segments
}

/// The candidate closest to `unknown`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase();
    let limit = (unknown.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&unknown, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of neighbours each cost 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| {
            let mut row = vec![0; b.len() + 1];
            row[0] = i;
            row
        })
        .collect();
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn names(defs: &[OptionDef]) -> Vec<&'static str> {
        defs.iter().map(|d| d.name).collect()
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("group", "group"), 0);
        assert_eq!(edit_distance("grup", "group"), 1);
        assert_eq!(edit_distance("verison", "version"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let handler = names(HANDLER_OPTIONS);
        assert_eq!(suggest("grup", &handler), Some("group"));
        assert_eq!(suggest("max_delivery", &handler), Some("max_deliver"));
        assert_eq!(suggest("ackwait", &handler), Some("ack_wait"));
        assert_eq!(suggest("Subject", &handler), Some("subject"));
        assert_eq!(suggest("deadletter", &handler), Some("dead_letter"));
        assert_eq!(suggest("retries", &handler), None);
        let event = names(EVENT_OPTIONS);
        assert_eq!(suggest("verison", &event), Some("version"));
        assert_eq!(suggest("vesion", &event), Some("version"));
        assert_eq!(suggest("topic", &event), None);
    }

    #[test]
    fn collects_every_error() {
        let cx = Ctxt::new();
        let attrs = HandlerAttrs::parse(
            &cx,
            quote!(
                grup = "a",
                group = "b",
                group = "c",
                max_deliver = "3",
                dead_letter,
                concurrency = 4,
            ),
        );
        let errors: Vec<String> = cx
            .check()
            .expect_err("four mistakes")
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("did you mean `group`?"));
        assert!(errors[1].contains("duplicate option `group`"));
        assert!(errors[2].contains("`max_deliver` expects a positive integer literal"));
        assert!(errors[3].contains("`dead_letter` needs a value"));
        assert_eq!(attrs.group.map(|g| g.value()).as_deref(), Some("b"));
        assert!(attrs.concurrency.is_some());
    }

    #[test]
    fn event_options() {
        let cx = Ctxt::new();
        let attrs = EventAttrs::parse(
            &cx,
            quote!(
                version = "v2",
                id = order_id,
                upcast_from = v1::Order,
                crate = my::jetflow
            ),
        );
        assert!(cx.check().is_ok());
        assert!(attrs.upcast_from.is_some());
        assert_eq!(attrs.version.map(|v| v.value()).as_deref(), Some("v2"));
        assert_eq!(attrs.id.map(|i| i.to_string()).as_deref(), Some("order_id"));
        assert!(attrs.krate.is_some());
    }
}
