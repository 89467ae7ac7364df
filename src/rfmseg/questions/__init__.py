"""The marketer's questions, answered from the runs (the history) and the campaign touches.

Each question is one typed function ``question(runs_dir, ...)`` returning a JSON-able dict: ``question``
(what was asked, with the parameters filled in), ``answer`` (one plain sentence), ``params``, and the numbers
and rows the answer was computed from. Numbers, thresholds and segment names are parameters; nothing about
the study is assumed. A question's signature (its annotated parameters) and docstring are also its MCP tool's
definition (:mod:`rfmseg.agent.mcp_server`).

By theme: :mod:`~rfmseg.questions.lookups` (segments, one customer, customers by RFM range, the onboarding
path of one customer),
:mod:`~rfmseg.questions.campaigns` (campaign fit, responders, not contacted),
:mod:`~rfmseg.questions.interventions` (intervention effect, holdout campaigns),
:mod:`~rfmseg.questions.trends` (trends, recent changes, recency jumps, one customer's trajectory,
transitions, warnings), :mod:`~rfmseg.questions.feed` (the profile store's change feed); what they share is in
:mod:`~rfmseg.questions.common`.
"""

from rfmseg.questions.campaigns import (
    KIND_KEYWORDS,
    campaign_segments,
    discount_candidates,
    keyword_hits,
    not_contacted,
)
from rfmseg.questions.common import (
    RFM,
    CustomerId,
    History,
    Snapshot,
    match_segment,
    no_runs_error,
    rounded,
    slug,
)
from rfmseg.questions.feed import MAX_FEED_PAGE, changes_since, feed_page
from rfmseg.questions.interventions import (
    campaign_measure,
    campaign_plan,
    campaign_size,
    campaigns,
    intervention_effect,
)
from rfmseg.questions.lookups import (
    SortField,
    customer_segment,
    find_customers,
    list_segments,
    onboarding_path,
    segment_profile,
)
from rfmseg.questions.trends import (
    Membership,
    customer_tracking,
    recency_jump,
    recent_changes,
    transitions,
    trending_toward,
    warnings,
)

QUESTIONS = {
    "campaign": campaign_segments,
    "discount": discount_candidates,
    "not-contacted": not_contacted,
    "trending": trending_toward,
    "changed": recent_changes,
    "recency-jump": recency_jump,
    "tracking": customer_tracking,
    "intervention": intervention_effect,
    "changes-since": changes_since,
    "onboarding": onboarding_path,
}
"""CLI name -> question function."""

__all__ = [
    "KIND_KEYWORDS",
    "MAX_FEED_PAGE",
    "QUESTIONS",
    "RFM",
    "CustomerId",
    "History",
    "Membership",
    "Snapshot",
    "SortField",
    "campaign_measure",
    "campaign_plan",
    "campaign_segments",
    "campaign_size",
    "campaigns",
    "changes_since",
    "customer_segment",
    "customer_tracking",
    "discount_candidates",
    "feed_page",
    "find_customers",
    "intervention_effect",
    "keyword_hits",
    "list_segments",
    "match_segment",
    "no_runs_error",
    "not_contacted",
    "onboarding_path",
    "recency_jump",
    "recent_changes",
    "rounded",
    "segment_profile",
    "slug",
    "transitions",
    "trending_toward",
    "warnings",
]
