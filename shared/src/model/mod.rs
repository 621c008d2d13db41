//! The ground floor: plain data and facts the other modules share, depending on none of them
//! (and on no AWS SDK type), so that no two of them need each other for it.

pub(crate) mod grant;

pub(crate) use grant::GrantView;
