"""Disease knowledge from reports: a rule-based CheXpert-style labeler and the Diff-CXR knowledge prompt.

>>> from diffcxr.knowledge import label_report, knowledge_prompt
>>> res = label_report("Moderate right pleural effusion. No pneumothorax.")
>>> res.labels["Pleural Effusion"], res.labels["Pneumothorax"]
(1.0, 0.0)
>>> knowledge_prompt(res.labels)
'There is pleural effusion.'
"""

from diffcxr.knowledge.labeler import Evidence, LabelResult, label_report, label_reports
from diffcxr.knowledge.prompt import (
    NO_FINDING_PROMPT,
    apply_overrides,
    canonical_finding,
    knowledge_prompt,
    label_value,
    parse_label_overrides,
)
from diffcxr.knowledge.sides import finding_sides

__all__ = [
    "Evidence",
    "LabelResult",
    "NO_FINDING_PROMPT",
    "apply_overrides",
    "canonical_finding",
    "finding_sides",
    "knowledge_prompt",
    "label_report",
    "label_reports",
    "label_value",
    "parse_label_overrides",
]
