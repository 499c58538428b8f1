//! Each page as a lazy route: built with `cargo leptos --split` (as
//! `scripts/leptos` does), a page's code is its own file of the browser
//! bundle, fetched when the page is first shown (on load, hydration waits
//! for it), so the bundle every page loads holds the shell alone. On the
//! server a lazy route renders like any other.

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

/// `$route`: the route's type, in the bundle; `$page`: the page component
/// whose code moves into that route's file.
macro_rules! lazy_page {
    ($($route:ident => $page:path,)*) => {$(
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                $page().into_any()
            }
        }
    )*};
}

lazy_page! {
    Sessions => super::SessionsPage,
    Session => super::SessionPage,
    SignIn => super::SignInPage,
    Setup => super::SetupPage,
    Account => super::AccountPage,
    Tokens => super::TokensPage,
    Credentials => super::CredentialsPage,
    Agents => super::AgentsPage,
    Agent => super::AgentPage,
    Users => super::UsersPage,
    Audit => super::AuditPage,
}
