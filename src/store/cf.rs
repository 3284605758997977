//! The column families of a state directory: their names and what each
//! holds.

/// The column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    /// Schema, input position, watermark, counters.
    Meta,
    /// beneficiary_id → roster history, deaths, months paid, review years.
    Beneficiaries,
    /// beneficiary_id + segment → the months (and their payments) of that
    /// beneficiary that one commit wrote; the newest segment holding a
    /// month has it whole.
    Months,
    /// account_no → the account's window and alert episodes (the account
    /// stage's alone).
    Accounts,
    /// deadline → the beneficiaries whose next `MISSED_PAYMENT` month has
    /// that deadline.
    Timers,
    /// alert_id → the alert (JSON): every alert ever raised.
    Alerts,
    /// sequence → alert_id: the order alerts were raised, for the sinks.
    AlertLog,
    /// sequence → dead letter (JSON) raised while applying records.
    DeadLetters,
    /// event day and sequence (all, and by township) → the alert's rule,
    /// severity and id: see `alert_index`.
    AlertIndex,
    /// target + sequence → a message not yet acknowledged by its sink
    /// (`paywatch run`): written in the same batch as the state that raised
    /// it, deleted only after delivery.
    Outbox,
    /// sequence → a webhook delivery that failed for good, for operators to
    /// inspect and send again.
    WebhookDead,
    /// alert_id + sequence → a review (复核) of an earlier release: read
    /// once by the v2 → v3 upgrade, which makes decisions of them.
    Reviews,
    /// case_id → the case (its alerts, decisions, status): see `cases`.
    Cases,
    /// custodian id_no → the versions of beneficiaries' rosters naming a
    /// registration with it (sent as facts), and its `CUSTODIAN_OVERLOAD`
    /// episode.
    Custodians,
    /// household_id → per beneficiary and roster version, whether the
    /// version is in the household and covers it (sent as facts; a covered
    /// member covers a vulnerable person of the household).
    Households,
    /// deadline → the `COVERAGE_GAP` referrals (person and record ids)
    /// waiting on it.
    Referrals,
    /// beneficiary_id → the roster versions no longer kept with the
    /// beneficiary (older than the one applying at the watermark), oldest
    /// first: read only by checks that look back at an earlier instant (a
    /// late custodian death, a late referral, an out-of-order record).
    RosterArchive,
    /// account_no → who registers this account for a custodian, version
    /// by version (`engine::registrations::Registrations`): n of
    /// `FREQUENT_PAYMENTS` is counted from it. The account stage owns it,
    /// with `Accounts`; roster versions reach it as facts.
    AccountCustodians,
    /// beneficiary_id → the earliest death of each custodian its roster
    /// ever registered with an `id_no` (sent as facts when the death or
    /// the registration arrives): `CUSTODIAN_DECEASED` reads it at the
    /// beneficiary's payments, never the custodian's own state.
    CustodianDeaths,
    /// household_id → the persons whose vulnerable-persons records ever
    /// named it: each is sent the household's coverage facts
    /// (`WatchedHouseholds`). Written with `Households`, by their owner.
    HouseholdWatchers,
    /// person_id → household_id → the household's `Households` entry as
    /// sent to the person (whose vulnerable records name it): the
    /// `COVERAGE_GAP` referral reads it, never the household's own state.
    WatchedHouseholds,
    /// sequence → a repartition record not yet acknowledged by the broker
    /// (topic, partition, key, bytes): staged in the same batch as the
    /// state that wrote it, deleted once the broker has it
    /// (`exchange::outbox`).
    ExchangeOut,
    /// repartition topic + partition → the reader's checkpoint there and
    /// the offset after the last record it read, committed with the
    /// reading task's state (`exchange::inbox`).
    ExchangeIn,
}

impl Cf {
    pub const ALL: [Cf; 23] = [
        Cf::Meta,
        Cf::Beneficiaries,
        Cf::Months,
        Cf::Accounts,
        Cf::Timers,
        Cf::Alerts,
        Cf::AlertLog,
        Cf::DeadLetters,
        Cf::Outbox,
        Cf::WebhookDead,
        Cf::Reviews,
        Cf::Cases,
        Cf::Custodians,
        Cf::Households,
        Cf::Referrals,
        Cf::AlertIndex,
        Cf::RosterArchive,
        Cf::AccountCustodians,
        Cf::CustodianDeaths,
        Cf::HouseholdWatchers,
        Cf::WatchedHouseholds,
        Cf::ExchangeOut,
        Cf::ExchangeIn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Beneficiaries => "beneficiaries",
            Cf::Months => "months",
            Cf::Accounts => "accounts",
            Cf::Timers => "timers",
            Cf::Alerts => "alerts",
            Cf::AlertLog => "alert_log",
            Cf::DeadLetters => "dead_letters",
            Cf::Outbox => "outbox",
            Cf::WebhookDead => "webhook_dead",
            Cf::Reviews => "reviews",
            Cf::Cases => "cases",
            Cf::Custodians => "custodians",
            Cf::Households => "households",
            Cf::Referrals => "referrals",
            Cf::AlertIndex => "alert_index",
            Cf::RosterArchive => "roster_archive",
            Cf::AccountCustodians => "account_custodians",
            Cf::CustodianDeaths => "custodian_deaths",
            Cf::HouseholdWatchers => "household_watchers",
            Cf::WatchedHouseholds => "watched_households",
            Cf::ExchangeOut => "exchange_out",
            Cf::ExchangeIn => "exchange_in",
        }
    }
}
