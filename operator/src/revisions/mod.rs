//! Revision bookkeeping: which revisions are in use, which can be pruned, which proxies are outdated.
