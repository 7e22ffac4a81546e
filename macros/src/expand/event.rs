//! `#[event]`: the struct with its serde / schema derives, the `Event`
//! impl, and the upcast chain from earlier versions.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Path, Token, punctuated::Punctuated};

use super::{crate_path, path_to_string, respan};
use crate::ast;
use crate::valid::EventSpec;

pub(super) fn event_impl(event: &ast::Event, spec: &EventSpec) -> TokenStream {
    let krate = crate_path(event.attrs.krate.as_ref());
    let item = &event.original;
    let ident = &item.ident;

    let derived = user_derives(&item.attrs);
    let mut derives = Vec::new();
    if !derived.serialize {
        derives.push(quote!(#krate::__private::serde::Serialize));
    }
    if !derived.deserialize {
        derives.push(quote!(#krate::__private::serde::Deserialize));
    }
    let private_path = |dep: &str| {
        LitStr::new(
            &format!("{}::__private::{dep}", path_to_string(&krate)),
            Span::call_site(),
        )
    };
    let serde_attrs = if derives.is_empty() {
        TokenStream::new()
    } else if has_crate_attr(&item.attrs, "serde") {
        quote!(#[derive(#(#derives),*)])
    } else {
        let serde = private_path("serde");
        quote!(#[derive(#(#derives),*)] #[serde(crate = #serde)])
    };
    let schemars_attrs = if derived.json_schema {
        TokenStream::new()
    } else if has_crate_attr(&item.attrs, "schemars") {
        quote!(#[derive(#krate::__private::schemars::JsonSchema)])
    } else {
        let schemars = private_path("schemars");
        quote!(#[derive(#krate::__private::schemars::JsonSchema)] #[schemars(crate = #schemars)])
    };

    let (name, version, stream) = (&spec.name, &spec.version, &spec.stream);
    let subject = format!("{name}.{version}");
    let event_key = spec.key.as_ref().map(|field| {
        // Spanned on the field named by `id`, where a non-`Display` type is reported.
        let key = quote_spanned!(field.span()=> ::std::string::ToString::to_string(&self.#field));
        quote! {
            fn event_key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(#key)
            }
        }
    });

    let schemars = quote!(#krate::__private::schemars);
    let schema = quote! {
        fn schema(
            __jetflow_generator: &mut #schemars::SchemaGenerator,
        ) -> ::core::option::Option<#schemars::Schema> {
            ::core::option::Option::Some(__jetflow_generator.subschema_for::<Self>())
        }
    };
    let (upcast, upcast_check) = match &spec.upcast_from {
        None => (TokenStream::new(), TokenStream::new()),
        Some(from) => upcast_impl(&krate, ident, spec, from),
    };

    let (notification, notification_impl) = if spec.notification {
        (
            quote!(
                const NOTIFICATION: bool = true;
            ),
            quote! {
                #[automatically_derived]
                impl #krate::Notification for #ident {}
            },
        )
    } else {
        (TokenStream::new(), TokenStream::new())
    };

    quote! {
        #serde_attrs
        #schemars_attrs
        #item
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: &'static str = #version;
                const SUBJECT: &'static str = #subject;
                const STREAM: &'static str = #stream;
                #notification
                #event_key
                #schema
                #upcast
            }
            #notification_impl
            #upcast_check
        };
    }
}

/// With `upcast_from = From`: the chain's `history` and `decode`, and the
/// compile-time rules of the link (same name, newer version). Both are
/// spanned on `From`, where a missing `impl From<From>` or a broken rule
/// is reported.
fn upcast_impl(
    krate: &Path,
    ident: &syn::Ident,
    spec: &EventSpec,
    from: &Path,
) -> (TokenStream, TokenStream) {
    let span = from.span();
    let krate = respan(krate, span);
    let (name, version) = (&spec.name, &spec.version);
    // The new type spanned on `From` too: a missing `From` impl is reported there.
    let ident = respan(ident, span);
    let methods = quote_spanned! {span=>
        fn history() -> ::std::vec::Vec<#krate::event::EventInfo> {
            #krate::event::history_upcast::<#ident, #from>()
        }
        fn decode(
            __jetflow_version: &::core::primitive::str,
            __jetflow_payload: &[::core::primitive::u8],
        ) -> ::core::result::Result<Self, #krate::event::DecodeError> {
            #krate::event::decode_upcast::<#ident, #from>(__jetflow_version, __jetflow_payload)
        }
    };
    let prev = path_to_string(from);
    let messages = [
        format!(
            "`{prev}` is not a version of `{name}`: every type of an upcast chain has the same event name; \
             set `name = \"{name}\"` on `{prev}`, or remove `upcast_from` to make `{ident}` a new event"
        ),
        format!(
            "`{ident}` and `{prev}` are both version `{version}` of `{name}`: each version is one type; give \
             `{ident}` the next version"
        ),
        format!(
            "`{ident}` is version `{version}` but upcasts from `{prev}`, a newer version: versions increase \
             along an upcast chain (v1 -> v2 -> v3); give `{ident}` a version after `{prev}`'s"
        ),
    ];
    let check = quote_spanned! {span=>
        const _: () = #krate::__private::assert_upcast(
            (<#from as #krate::Event>::NAME, <#from as #krate::Event>::VERSION),
            (#name, #version),
            [#(#messages),*],
        );
    };
    (methods, check)
}

/// The derives of the struct that `#[event]` would otherwise add.
struct UserDerives {
    serialize: bool,
    deserialize: bool,
    json_schema: bool,
}

/// Whether the struct already derives `Serialize` / `Deserialize` /
/// `JsonSchema` (any path ending in those names).
fn user_derives(attrs: &[Attribute]) -> UserDerives {
    let (mut serialize, mut deserialize, mut json_schema) = (false, false, false);
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated)
        else {
            continue;
        };
        for path in &paths {
            match path.segments.last().map(|s| s.ident.to_string()).as_deref() {
                Some("Serialize") => serialize = true,
                Some("Deserialize") => deserialize = true,
                Some("JsonSchema") => json_schema = true,
                _ => {}
            }
        }
    }
    UserDerives {
        serialize,
        deserialize,
        json_schema,
    }
}

/// Whether the struct already has `#[serde(crate = "...")]` (or `schemars`).
fn has_crate_attr(attrs: &[Attribute], tool: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident(tool))
        .any(|attr| {
            let mut found = false;
            let _ = attr.parse_nested_meta(|meta| {
                found |= meta.path.is_ident("crate");
                if meta.input.peek(Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
            found
        })
}
