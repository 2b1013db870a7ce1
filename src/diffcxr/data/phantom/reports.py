"""Radiologist-style reports for phantoms, and the CheXpert labels those reports state.

Every sentence template carries the labels it asserts (``1`` positive, ``0`` explicitly negated, ``-1``
hedged), so the label columns of a phantom dataset are exactly what its report says — the
convention of CheXpert / MIMIC-CXR, where labels come from the report, not from the image. A finding
that is present but subtle is sometimes hedged ("Possible small left pleural effusion.") and then
labeled ``-1``; absent findings are sometimes negated explicitly ("No pneumothorax.") and then labeled
``0``; anything not mentioned stays empty. ``No Finding`` is ``1`` when no pathology (Support Devices
aside) is positive or uncertain.

Reports follow the usual layout — ``FINDINGS:`` devices, lungs, pleura, heart and mediastinum, bones;
then ``IMPRESSION:`` — with several templates and synonyms per finding, severity and side words.
"""

from __future__ import annotations

import numpy as np

from diffcxr.data.phantom.findings import Finding
from diffcxr.findings import CHEXPERT_FINDINGS

ADJ = {1: "mild", 2: "moderate", 3: "severe"}
ADV = {1: "mildly", 2: "moderately", 3: "markedly"}
SIZE = {1: "small", 2: "moderate", 3: "large"}
ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh",
           8: "eighth", 9: "ninth", 10: "tenth"}
HEDGE_PROBABILITY = 0.35  # of subtle findings
PATHOLOGIES = tuple(f for f in CHEXPERT_FINDINGS if f not in ("No Finding", "Support Devices"))

Sentence = tuple[str, dict]  # (text, {CheXpert finding: value})


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(0, len(options)))]


def _lobe_phrase(side: str, lobe: str) -> tuple[str, str]:
    """(noun phrase, adjective phrase) of a lobe: ("lingula", "lingular"), ("right upper lobe", same)."""
    if lobe == "lingula":
        return "lingula", "lingular"
    if lobe == "middle":
        return "right middle lobe", "right middle lobe"
    if side == "bilateral":
        return f"bilateral {lobe} lobes", f"bilateral {lobe} lobe"
    return f"{side} {lobe} lobe", f"{side} {lobe} lobe"


def _zone_phrase(rng, side: str, lobe: str) -> tuple[str, str]:
    """(noun phrase, adjective phrase) of a lung zone: ("right lung base", "right basilar")."""
    zone = {"upper": "upper lung", "middle": "mid lung", "lingula": "mid lung", "lower": "lung base"}[lobe]
    if side == "bilateral":
        if lobe == "lower":
            return _pick(rng, ["bilateral lung bases", "lung bases bilaterally"]), "bibasilar"
        return f"bilateral {zone}s", f"bilateral {zone}"
    if lobe == "lower":
        return _pick(rng, [f"{side} lung base", f"{side} lower lung"]), _pick(rng, [f"{side} basilar", f"{side} lower lung"])
    return f"{side} {zone}", f"{side} {zone}"


# ------------------------------------------------------------------------------------ positives
def _positive(f: Finding, rng, hedge: bool) -> tuple[Sentence, Sentence]:
    """(FINDINGS sentence, IMPRESSION sentence) for a present finding; hedged when ``hedge``."""
    k, sev, side = f.kind, f.severity, f.side
    if k == "cardiomegaly":
        if hedge:
            s = _pick(rng, ["Heart size is borderline.", "The cardiac silhouette is mildly prominent.",
                            "Possible mild cardiomegaly."])
            return (s, {"Cardiomegaly": -1}), ("Borderline heart size.", {"Cardiomegaly": -1})
        s = _pick(rng, [f"{_cap(ADJ[sev])} cardiomegaly.", f"The heart is {ADV[sev]} enlarged.",
                        f"The cardiac silhouette is {ADV[sev]} enlarged.",
                        f"{_cap(ADJ[sev])} enlargement of the cardiac silhouette.", "The heart is enlarged.",
                        "Enlarged cardiac silhouette.", f"{_cap(ADJ[sev])} cardiac enlargement."])
        return (s, {"Cardiomegaly": 1}), (_pick(rng, ["Cardiomegaly.", f"{_cap(ADJ[sev])} cardiomegaly."]),
                                          {"Cardiomegaly": 1})
    if k == "enlarged_cardiomediastinum":
        lab = {"Enlarged Cardiomediastinum": -1 if hedge else 1}
        if hedge:
            s = _pick(rng, ["The mediastinal contours are mildly prominent.",
                            "Possible widening of the mediastinum."])
            return (s, lab), ("Possible mediastinal widening.", lab)
        s = _pick(rng, [f"The mediastinum is {ADV[sev]} widened.", f"{_cap(ADJ[sev])} widening of the mediastinum.",
                        "Enlarged cardiomediastinal silhouette.", f"{_cap(ADJ[sev])} mediastinal widening."])
        return (s, lab), (_pick(rng, ["Widened mediastinum.", "Mediastinal widening."]), lab)
    if k == "pleural_effusion":
        bil = side == "bilateral"
        eff = "pleural effusions" if bil else "pleural effusion"
        where = "bilateral" if bil else _pick(rng, [side, f"{side}-sided"])
        if hedge:
            s = _pick(rng, [f"Possible small {where} {eff}.",
                            f"Blunting of the {side if not bil else 'bilateral'} costophrenic "
                            f"angle{'s' if bil else ''} may reflect small {eff}.",
                            f"Trace {where} {eff} {'are' if bil else 'is'} not excluded."])
            return (s, {"Pleural Effusion": -1}), (f"Possible small {where} {eff}.", {"Pleural Effusion": -1})
        s = _pick(rng, [f"{_cap(SIZE[sev])} {where} {eff}.", f"There {'are' if bil else 'is a'} {SIZE[sev]} {where} {eff}.",
                        f"{_cap(SIZE[sev])} {where} {eff} with a meniscus along the lateral chest wall.",
                        (f"Bilateral {SIZE[sev]} pleural effusions." if bil
                         else f"Layering {SIZE[sev]} {side} pleural effusion.")])
        return (s, {"Pleural Effusion": 1}), (f"{_cap(SIZE[sev])} {where} {eff}.", {"Pleural Effusion": 1})
    if k == "pneumothorax":
        ap = " apical" if f.detail.get("apical") else ""
        if hedge:
            s = _pick(rng, [f"Questionable tiny {side}{ap} pneumothorax.",
                            f"A small {side}{ap} pneumothorax cannot be excluded."])
            return (s, {"Pneumothorax": -1}), (f"Possible small {side}{ap} pneumothorax.", {"Pneumothorax": -1})
        size_word = _pick(rng, ["tiny", "small"]) if sev == 1 else SIZE[sev]
        s = _pick(rng, [f"{_cap(size_word)} {side}{ap} pneumothorax.", f"There is a {size_word} {side}{ap} pneumothorax.",
                        f"A {side} visceral pleural line is seen, consistent with a {SIZE[sev]} pneumothorax."])
        imp = f"{_cap(SIZE[sev])} {side} pneumothorax."
        return (s, {"Pneumothorax": 1}), (imp, {"Pneumothorax": 1})
    if k in ("consolidation", "lung_opacity", "pneumonia"):
        lobar = f.detail.get("pattern") == "lobar"
        loc, adj = _lobe_phrase(side, f.detail["lobe"]) if lobar else _zone_phrase(rng, side, f.detail["lobe"])
        br = " with air bronchograms" if f.detail.get("bronchograms") else ""
        if k == "consolidation":
            if hedge:
                s, lab = _pick(rng, [(f"Possible early consolidation in the {loc}.", {"Consolidation": -1}),
                                     (f"Subtle {adj} opacity may represent early consolidation.",
                                      {"Lung Opacity": 1, "Consolidation": -1})])
                return (s, lab), (f"Possible {adj} consolidation.", {"Consolidation": -1})
            dense = {1: "Focal", 2: "Confluent", 3: "Dense"}[sev]
            s = _pick(rng, [f"{dense} consolidation in the {loc}{br}.", f"{_cap(adj)} consolidation{br}.",
                            f"There is {dense.lower()} consolidation of the {loc}{br}."])
            return (s, {"Consolidation": 1}), (f"{_cap(adj)} consolidation.", {"Consolidation": 1})
        if k == "lung_opacity":
            if hedge:
                s = f"Possible subtle opacity in the {loc}."
                return (s, {"Lung Opacity": -1}), (f"Possible {adj} opacity.", {"Lung Opacity": -1})
            kind = "Patchy" if not lobar else _pick(rng, ["Hazy", "Ill-defined"])
            options = [f"{kind} opacity in the {loc}.", f"{kind} airspace opacity in the {loc}.",
                       f"There is {kind.lower()} opacity in the {loc}.", f"{_cap(adj)} opacity.",
                       f"{_cap(adj)} airspace disease."]
            if side == "left" and f.detail["lobe"] == "lower":
                options.append("Retrocardiac opacity.")
            s = _pick(rng, options)
            return (s, {"Lung Opacity": 1}), (f"{_cap(adj)} opacity.", {"Lung Opacity": 1})
        # pneumonia: the image shows consolidation/opacity; the report names the cause
        if hedge or rng.random() < 0.25:
            s, lab = _pick(rng, [
                (f"{_cap(adj)} opacity, concerning for pneumonia.", {"Lung Opacity": 1, "Pneumonia": -1}),
                (f"Opacity in the {loc} may represent pneumonia.", {"Lung Opacity": 1, "Pneumonia": -1}),
                (f"{_cap(adj)} consolidation, suspicious for pneumonia.", {"Consolidation": 1, "Pneumonia": -1}),
            ])
            return (s, lab), (f"{_cap(adj)} opacity, possibly pneumonia.", {"Lung Opacity": 1, "Pneumonia": -1})
        s, lab = _pick(rng, [
            (f"{_cap(adj)} consolidation{br}, consistent with pneumonia.", {"Consolidation": 1, "Pneumonia": 1}),
            (f"Patchy opacity in the {loc}, compatible with pneumonia.", {"Lung Opacity": 1, "Pneumonia": 1}),
            (f"Airspace consolidation in the {loc} consistent with pneumonia.", {"Consolidation": 1, "Pneumonia": 1}),
        ])
        return (s, lab), (f"{_cap(adj)} pneumonia.", {"Pneumonia": 1})
    if k == "edema":
        if hedge:
            s = _pick(rng, ["Possible mild interstitial edema.", "Mild interstitial edema is not excluded."])
            return (s, {"Edema": -1}), ("Possible mild pulmonary edema.", {"Edema": -1})
        kerley = " with Kerley B lines" if f.detail.get("kerley") else ""
        s, lab = _pick(rng, [
            (f"{_cap(ADJ[sev])} pulmonary edema{kerley}.", {"Edema": 1}),
            (f"{_cap(ADJ[sev])} interstitial pulmonary edema{kerley}.", {"Edema": 1}),
            (f"Pulmonary vascular congestion with {ADJ[sev]} interstitial edema.", {"Edema": 1}),
            (("Mild pulmonary vascular congestion." if sev == 1 else f"{_cap(ADJ[sev])} pulmonary edema."), {"Edema": 1}),
            (f"Perihilar haziness and vascular congestion, consistent with {ADJ[sev]} pulmonary edema.",
             {"Edema": 1, "Lung Opacity": 1}),
        ])
        return (s, lab), (f"{_cap(ADJ[sev])} pulmonary edema.", {"Edema": 1})
    if k == "atelectasis":
        where = {"bilateral": "bibasilar", "right": "right basilar", "left": "left basilar"}[side]
        kind = _pick(rng, ["plate-like", "linear", "subsegmental", "discoid"])
        if hedge and rng.random() < 0.5:
            s, lab = _pick(rng, [
                (f"{_cap(where)} linear opacities, likely atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
                (f"{_cap(where)} opacities may reflect atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
            ])
            return (s, lab), (f"{_cap(where)} opacities, possibly atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1})
        base = "lung bases" if side == "bilateral" else f"{side} lung base"
        s = _pick(rng, [f"{_cap(kind)} atelectasis at the {base}.", f"{_cap(where)} {kind} atelectasis.",
                        f"{_cap(ADJ[f.severity])} {where} atelectasis."])
        return (s, {"Atelectasis": 1}), (f"{_cap(where)} atelectasis.", {"Atelectasis": 1})
    if k == "lung_lesion":
        zone = {"upper": "upper lung", "mid": "mid lung", "lower": "lower lung"}[f.detail["zone"]]
        loc = f"{side} {zone}"
        cm = f.detail["size_cm"]
        typ = f.detail["type"]
        if hedge:
            s = f"Possible small nodule in the {loc}."
            return (s, {"Lung Lesion": -1}), (f"Possible {loc} nodule; CT recommended.", {"Lung Lesion": -1})
        s = _pick(rng, [f"{cm:g} cm {typ} in the {loc}.", f"There is a {cm:g} cm {side} {zone} {typ}.",
                        f"A well-circumscribed {cm:g} cm pulmonary {typ} projects over the {loc}.",
                        f"{_cap(loc)} {typ} measuring {cm:g} cm.",
                        (f"Spiculated {cm:g} cm mass in the {loc}." if typ == "mass" else f"Round {cm:g} cm nodule in the {loc}.")])
        return (s, {"Lung Lesion": 1}), (f"{_cap(loc)} {typ}.", {"Lung Lesion": 1})
    if k == "fracture":
        rib = ORDINAL[f.detail["rib"] + 1]
        if hedge:
            s = _pick(rng, [f"Possible nondisplaced fracture of the {side} {rib} rib.",
                            f"Cortical irregularity of the {side} {rib} rib may represent a nondisplaced fracture."])
            return (s, {"Fracture": -1}), (f"Possible {side} {rib} rib fracture.", {"Fracture": -1})
        disp = "displaced" if f.detail.get("displaced") else "nondisplaced"
        s = _pick(rng, [f"Acute fracture of the {side} {rib} rib.", f"{_cap(disp)} fracture of the lateral {side} {rib} rib.",
                        f"There is a {disp} {side} {rib} rib fracture."])
        return (s, {"Fracture": 1}), (f"{_cap(side)} {rib} rib fracture.", {"Fracture": 1})
    if k == "support_devices":
        parts = []
        for d in f.detail["devices"]:
            if d == "ett":
                cm = int(rng.integers(3, 7))
                parts.append(_pick(rng, [f"Endotracheal tube terminates {cm} cm above the carina.",
                                         "The endotracheal tube is in standard position.",
                                         f"ET tube tip is {cm} cm above the carina."]))
            elif d == "cvc":
                where = "Right internal jugular" if f.detail.get("cvc_side") == "right" else "Left subclavian"
                parts.append(_pick(rng, [f"{where} central venous catheter terminates in the mid SVC.",
                                         f"{where} central line with tip at the cavoatrial junction.",
                                         ("Right IJ line tip in the SVC." if where.startswith("Right")
                                          else "Left subclavian line tip projects over the SVC.")]))
            elif d == "enteric":
                parts.append(_pick(rng, ["Enteric tube courses below the diaphragm with the tip in the stomach.",
                                         "Nasogastric tube tip is in the stomach.",
                                         "The tip of the NG tube is below the diaphragm."]))
            elif d == "pacemaker":
                parts.append(_pick(rng, ["Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                                         "Left-sided dual-lead pacemaker is in place."]))
            elif d == "picc":
                parts.append("Right upper extremity PICC line terminates in the SVC.")
        imp = _pick(rng, ["Lines and tubes in standard position.", "Support devices in expected position."])
        if f.detail["devices"] == ["pacemaker"]:
            imp = "Pacemaker in place."
        return (" ".join(parts), {"Support Devices": 1}), (imp, {"Support Devices": 1})
    raise ValueError(f"no report template for {k!r}")


# ------------------------------------------------------------------------------------ negatives
NEGATIVES: list[tuple[str, tuple[str, ...], list[str]]] = [
    # (report section, findings that must be absent, templates that negate exactly those findings)
    ("pleura", ("Pleural Effusion", "Pneumothorax"), ["No pleural effusion or pneumothorax.",
                                                      "There is no pleural effusion or pneumothorax.",
                                                      "No effusion or pneumothorax."]),
    ("pleura", ("Pleural Effusion",), ["No pleural effusion.", "No pleural effusions."]),
    ("pleura", ("Pleural Effusion", "Pneumothorax", "Consolidation"), [
        "No pleural effusion, pneumothorax, or focal consolidation.",
        "No focal consolidation, pleural effusion or pneumothorax."]),
    ("pleura", ("Pneumothorax",), ["No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."]),
    ("lungs", ("Consolidation", "Pleural Effusion", "Pneumothorax"), [
        "The lungs are clear without focal consolidation, effusion, or pneumothorax."]),
    ("lungs", ("Consolidation",), ["No focal consolidation.", "There is no focal airspace consolidation."]),
    ("lungs", ("Consolidation", "Lung Opacity"), ["No focal consolidation or airspace opacity."]),
    ("lungs", ("Pneumonia",), ["No evidence of pneumonia."]),
    ("lungs", ("Edema",), ["No pulmonary edema.", "No evidence of pulmonary edema."]),
    ("lungs", ("Lung Lesion",), ["No suspicious pulmonary nodules or masses.", "No focal mass or nodule."]),
    ("heart", ("Cardiomegaly",), ["Heart size is normal.", "The heart is normal in size.", "Normal heart size."]),
    ("heart", ("Cardiomegaly", "Enlarged Cardiomediastinum"), [
        "The cardiomediastinal silhouette is within normal limits.", "Heart size and mediastinal contours are normal.",
        "Normal cardiomediastinal silhouette.", "Cardiac and mediastinal contours are normal.",
        "The heart and mediastinum are within normal limits."]),
    ("heart", ("Enlarged Cardiomediastinum",), ["The mediastinal contours are normal.",
                                                "Mediastinal contours are within normal limits.",
                                                "The mediastinum is not widened."]),
    ("bones", ("Fracture",), ["No acute fracture.", "No displaced rib fracture.", "No acute rib fracture is identified."]),
]


def _negatives(rng, asserted: dict, normal: bool) -> dict[str, list[Sentence]]:
    """Pick explicit negative sentences for findings that are absent (more of them for normal studies)."""
    out: dict[str, list[Sentence]] = {"lungs": [], "pleura": [], "heart": [], "bones": []}
    taken: set[str] = set(asserted)
    p_use = 0.85 if normal else 0.45
    for i in rng.permutation(len(NEGATIVES)).tolist():
        group, findings, templates = NEGATIVES[i]
        if any(f in taken for f in findings) or rng.random() > p_use:
            continue
        out[group].append((_pick(rng, templates), {f: 0 for f in findings}))
        taken.update(findings)
    return out


# ------------------------------------------------------------------------------------ report
# What a finding kind puts in the image, as CheXpert names: such names are never negated in its report.
PRESENT_AS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": ("Cardiomegaly", "Enlarged Cardiomediastinum"),
    "enlarged_cardiomediastinum": ("Enlarged Cardiomediastinum",),
    "pleural_effusion": ("Pleural Effusion",),
    "pneumothorax": ("Pneumothorax",),
    "consolidation": ("Consolidation", "Lung Opacity", "Pneumonia"),
    "lung_opacity": ("Consolidation", "Lung Opacity", "Pneumonia"),
    "pneumonia": ("Consolidation", "Lung Opacity", "Pneumonia"),
    "edema": ("Edema", "Lung Opacity", "Consolidation"),
    "atelectasis": ("Atelectasis", "Lung Opacity", "Consolidation"),
    "lung_lesion": ("Lung Lesion", "Lung Opacity"),
    "fracture": ("Fracture",),
    "support_devices": ("Support Devices",),
}
_GROUP = {
    "support_devices": "devices", "consolidation": "lungs", "lung_opacity": "lungs", "pneumonia": "lungs",
    "edema": "lungs", "atelectasis": "lungs", "lung_lesion": "lungs", "pleural_effusion": "pleura",
    "pneumothorax": "pleura", "cardiomegaly": "heart", "enlarged_cardiomediastinum": "heart", "fracture": "bones",
}
NORMAL_IMPRESSIONS = ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                      "Normal chest radiograph.", "No evidence of acute cardiopulmonary disease."]
NORMAL_LUNGS = ["The lungs are clear.", "Lungs are well expanded and clear.", "The lungs are clear bilaterally."]
NORMAL_BONES = ["No acute osseous abnormality.", "Visualized osseous structures are unremarkable."]


def write_report(findings: list[Finding], rng: np.random.Generator, return_sentences: bool = False):
    """Write FINDINGS + IMPRESSION for ``findings``; return ``(text, labels)``.

    ``labels`` maps each of the 14 CheXpert findings to ``1.0`` / ``0.0`` / ``-1.0`` / ``None``. With
    ``return_sentences=True`` also return the list of ``(sentence, labels it asserts)`` the report is made of.
    """
    groups: dict[str, list[Sentence]] = {"devices": [], "lungs": [], "pleura": [], "heart": [], "bones": []}
    impression: list[Sentence] = []
    asserted: dict[str, float] = {}
    for f in findings:
        hedge = f.subtle and rng.random() < HEDGE_PROBABILITY
        (s, lab), (imp, imp_lab) = _positive(f, rng, hedge)
        groups[_GROUP[f.kind]].append((s, lab))
        impression.append((imp, imp_lab))
        asserted.update(lab)
        asserted.update({name: 1 for name in PRESENT_AS[f.kind]})
    pathology = [f for f in findings if f.kind != "support_devices"]
    normal = not pathology
    negs = _negatives(rng, asserted, normal)
    body: list[Sentence] = list(groups["devices"])
    lung_pos = groups["lungs"]
    clear_said = any(t.startswith("The lungs are clear") for t, _ in negs["lungs"])
    if (not lung_pos and not clear_said and rng.random() < 0.7
            and not any(f.kind in ("pleural_effusion", "pneumothorax") for f in findings)):
        body.append((_pick(rng, NORMAL_LUNGS), {}))
    body += lung_pos + negs["lungs"] + groups["pleura"] + negs["pleura"] + groups["heart"] + negs["heart"]
    body += groups["bones"] + negs["bones"]
    if not groups["bones"] and not negs["bones"] and rng.random() < 0.4:
        body.append((_pick(rng, NORMAL_BONES), {}))
    # impression: positives (devices last), or a normal statement
    imp_sents = [s for s in impression if "Support Devices" not in s[1]]
    dev_imp = [s for s in impression if "Support Devices" in s[1]]
    if normal or not imp_sents:
        imp_sents = [(_pick(rng, NORMAL_IMPRESSIONS), {})]
        if dev_imp and rng.random() < 0.5:
            imp_sents = imp_sents + dev_imp
    elif dev_imp and rng.random() < 0.5:
        imp_sents = imp_sents + dev_imp
    if len(imp_sents) > 1 and rng.random() < 0.5:
        imp_text = "\n".join(f"{i + 1}. {s}" for i, (s, _) in enumerate(imp_sents))
    else:
        imp_text = " ".join(s for s, _ in imp_sents)
    text = "FINDINGS: " + " ".join(s for s, _ in body) + "\n\nIMPRESSION: " + imp_text
    labels = _combine([lab for _, lab in body] + [lab for _, lab in imp_sents])
    if return_sentences:
        return text, labels, body + imp_sents
    return text, labels


def _combine(label_dicts) -> dict:
    """Aggregate sentence labels like the CheXpert convention: positive > uncertain > negative."""
    rank = {1: 3, -1: 2, 0: 1}
    out: dict = {name: None for name in CHEXPERT_FINDINGS}
    for lab in label_dicts:
        for name, v in lab.items():
            if out[name] is None or rank[v] > rank[int(out[name])]:
                out[name] = float(v)
    if not any(out[p] in (1.0, -1.0) for p in PATHOLOGIES):
        out["No Finding"] = 1.0
    return out
