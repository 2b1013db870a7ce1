"""The labeler's vocabulary: finding mentions, exclusions, anatomy qualifiers and scope triggers.

Everything here is a lower-case regular-expression fragment matched against the lower-cased report
text (the labeler keeps character offsets, so evidence spans point into the caller's text). The
vocabulary follows the CheXpert labeler's categories (Irvin et al., 2019) with these documented choices:

* ``Lung Opacity`` means parenchymal opacity (opacity, infiltrate, airspace disease, ground-glass,
  haziness, increased / airspace density). A bare "density" (often an overlying structure, a calcific or
  fat density) is an *other finding*, as in CheXpert. Scarring and "interstitial markings", which CheXpert also files
  under Lung Opacity, are treated as *other findings* here: they are named separately by
  radiologists and a generation prompt "There is lung opacity." should not stand for a scar.
* ``Lung Lesion``: nodule, mass, tumour, neoplasm, cavitary lesion, pulmonary metastasis. Granulomas
  (healed, usually calcified) are other findings, as in CheXpert.
* ``Edema`` includes vascular/pulmonary congestion and heart failure, as in CheXpert.
* ``Pleural Effusion`` includes hydrothorax, haemothorax and hydro-/haemopneumothorax.
  Costophrenic-angle blunting alone is an *other finding* (it is as often pleural thickening), as in CheXpert.
* *Other findings* (emphysema, granuloma, degenerative spine, low lung volumes, hyperinflation,
  post-surgical change ...) are not output categories; when positive or uncertain they make
  ``No Finding`` not positive, as CheXpert's no-finding list does.

Hyphens and spaces are interchangeable inside phrases ("right-sided", "cardio-mediastinal",
"air-space"); British spellings are accepted ("oedema", "haemothorax", "tumour").
"""

from __future__ import annotations

import re

# Separator between words of a phrase: spaces or a hyphen ("air-space", "ground glass").
S = r"[\s\-]*"
SP = r"[\s\-]+"

# ---------------------------------------------------------------------------------------------
# Direct mentions: finding -> regex fragments. A match is a mention of the finding.
# ---------------------------------------------------------------------------------------------
MENTIONS: dict[str, list[str]] = {
    "Atelectasis": [
        r"atelecta\w*",
        rf"(?:lung|lobar|lobe|segmental|lobular){SP}collapse",
        rf"collapse{SP}of{SP}the{SP}(?:\w+{SP}){{0,3}}(?:lung|lobe)",
        rf"collapsed{SP}(?:\w+{SP}){{0,2}}(?:lung|lobe)",
    ],
    "Cardiomegaly": [
        r"cardiomegal+y",  # and the common misspelling "cardiomegally"
        rf"cardiac{SP}enlargement",
        rf"enlarged{SP}(?:\w+{SP})?heart",
    ],
    "Consolidation": [
        r"consolidat\w*",
    ],
    "Edema": [
        r"o?edema\w*",
        rf"(?:pulmonary|vascular|venous|interstitial|perihilar|hilar){SP}(?:vascular{SP})?congestion",
        rf"congestive{SP}(?:heart{SP})?failure",
        r"chf",
        rf"heart{SP}failure",
        rf"(?:fluid|volume){SP}overload",
        rf"kerley{S}b?(?:{SP}lines?)?",
        r"cephali[sz]ation",
        rf"vascular{SP}(?:engorgement|redistribution|prominence|indistinctness)",
        r"congestion", rf"congestive{SP}changes?",
        rf"prominen\w*{SP}(?:of{SP}the{SP})?(?:\w+{SP})?(?:vasculature|vascularity|vessels|vascular{SP}markings)",
        rf"(?:increased|engorged|indistinct){SP}(?:\w+{SP})?(?:vasculature|vascularity|vessels|vascular{SP}markings)",
        rf"(?:vasculature|vascularity|vessels){SP}(?:is|are|appears?|remains?){SP}(?:(?!not\b|no\b)\w+{SP})?"
        rf"(?:engorged|prominent|increased|indistinct)",
        rf"indistinct{SP}(?:pulmonary{SP})?vascular{SP}margin\w*",
    ],
    "Enlarged Cardiomediastinum": [
        rf"(?:widened|widening{SP}of{SP}the|enlarged|enlargement{SP}of{SP}the){SP}(?:cardio{S})?mediastin\w*",
        rf"mediastinal{SP}(?:widening|enlargement)",
    ],
    "Fracture": [
        r"fractur\w*",
        r"fx",
    ],
    "Lung Lesion": [
        r"nodul(?:e|es|ar|arity)",
        r"mass(?:es)?",
        r"tumou?rs?",
        r"neoplas\w*",
        r"carcinoma\w*",
        rf"cavitary{SP}(?:lesion|mass)\w*",
        r"cavitation",
        r"lesions?",
        r"metasta\w*",
        r"lump",
    ],
    "Lung Opacity": [
        r"opaci\w*",
        r"infiltrat\w*",
        rf"air{S}space{SP}(?:disease|process|opaci\w*)",
        rf"alveolar{SP}(?:disease|process|filling)",
        rf"ground{S}glass",
        r"hazy",
        r"haziness",
        rf"(?:increased|increasing|airspace|air{S}space|alveolar|parenchymal|patchy|hazy|confluent|streaky){SP}densit(?:y|ies)",
        rf"decreased{SP}(?:translucency|lucency)",
        rf"reticular{SP}pattern",
        r"reticulonodular",
    ],
    "Pleural Effusion": [
        rf"pleural{SP}effusions?", r"effusions?",
        rf"pleural{SP}fluid",
        rf"fluid{SP}(?:in|within){SP}the{SP}(?:\w+{SP}){{0,2}}(?:pleural{SP}space|fissure)",
        rf"layering{SP}fluid",
        r"hydrothora(?:x|ces)",
        r"ha?emothora(?:x|ces)",
        r"hydropneumothora(?:x|ces)",
        r"ha?emopneumothora(?:x|ces)",
    ],
    "Pleural Other": [
        rf"pleural{SP}(?:\w+{SP})?(?:thickening|plaques?|calcifications?|scar\w*)",
        rf"thickening{SP}of{SP}the{SP}pleura",
        r"fibrothorax",
        rf"pleuro{S}(?:parenchymal|pericardial){SP}scar\w*",
        rf"apical{SP}(?:pleural{SP})?(?:cap|capping)",
    ],
    "Pneumonia": [
        r"pneumoni\w*",
        r"bronchopneumoni\w*",
        r"infecti(?:on|ons|ous)",
    ],
    "Pneumothorax": [
        r"pneumothora(?:x|ces)",
        r"ptx",
        rf"pleural{SP}air(?:{SP}collections?)?",
    ],
    "Support Devices": [
        rf"(?:endotracheal|et|tracheostomy|trach|nasogastric|ng|og|orogastric|feeding|chest|enteric|gastric|"
        rf"dobhoff|nasoenteric|g|j|gj|drainage|thoracostomy|pigtail){SP}tubes?",
        r"tubes?",
        r"catheters?",
        r"picc",
        r"ett", r"ngt", r"ogt", r"ogts", r"ngts",  # endotracheal / naso- / orogastric tube, as MIMIC abbreviates them
        rf"(?:central|venous|arterial|midline|port|subclavian|jugular|ij|swan{S}ganz|pa|picc){SP}(?:venous{SP})?lines?",
        r"port(?:{S}a{S}cath)?s?",
        r"portacath",
        r"mediport",
        r"pacemakers?",
        r"pacers?",
        r"(?:a?icd)s?",
        r"defibrillators?",
        rf"(?:pacer|pacemaker|pacing|cardiac){SP}(?:leads?|wires?|generator)",
        rf"(?:transvenous|epicardial){SP}(?:leads?|wires?)",
        r"stents?",
        rf"(?:prosthetic|mechanical|replaced){SP}(?:\w+{SP})?valves?",
        rf"valve{SP}(?:replacement|prosthesis)",
        r"drains?",
        r"cannula",
        rf"(?:intra{S}aortic{SP})?balloon{SP}pump",
        r"iabp",
        r"lvad",
        r"impella",
        r"(?:loop{SP})?recorder",
        r"swan{S}ganz",
        rf"support{SP}(?:devices?|apparatus|lines)",
        r"monitoring leads",
    ],
}

# A mention of one finding that also mentions another (the labeler scans all findings in one pass, so
# one span can only match one finding's phrases): finding -> [(regex within the mention, other finding)].
ALSO_MEANS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "Pleural Effusion": [(re.compile(r"pneumothora"), "Pneumothorax")],  # hydro-/haemopneumothorax
}

# Mentions that are cancelled when they fall inside one of these larger phrases (finding -> regexes).
EXCLUSIONS: dict[str, list[str]] = {
    "Atelectasis": [],
    "Edema": [
        rf"(?:soft{SP}tissue|subcutaneous|chest{SP}wall|facial|peripheral|extremity|leg|pedal|ankle|"
        rf"scalp|bowel{SP}wall|mucosal|cerebral|airway|laryngeal){SP}o?edema",
        rf"(?:nasal|sinus){SP}congestion",
    ],
    "Enlarged Cardiomediastinum": [],
    "Fracture": [
        rf"(?:catheter|line|lead|leads|wire|wires|screw|screws|hardware|device|pacemaker|plate|rod|stent){SP}fractur\w*",
        rf"fractured{SP}(?:\w+{SP}){{0,3}}(?:catheter|line|lead|leads|wire|wires|screw|screws|hardware|plate|rod|stent)s?",
    ],
    "Lung Lesion": [
        rf"mass{SP}effect",
        rf"(?:body|muscle|bone|breast|neck|thyroid|abdominal|soft{SP}tissue|chest{SP}wall|pericardial|cardiac|"
        rf"adrenal|renal|liver|hepatic){SP}mass(?:es)?",
        rf"(?:lytic|sclerotic|blastic|osseous|bone|bony|skeletal|skin|cutaneous|vertebral|rib|spinal|"
        rf"liver|hepatic|renal|brain|sclerotic{SP}bone|expansile){SP}(?:\w+{SP})?(?:lesions?|metasta\w*|mass(?:es)?)",
        rf"(?:lesions?|metasta\w*){SP}(?:of|in|to|within){SP}the{SP}(?:\w+{SP})?(?:bone|bones|spine|rib|ribs|"
        rf"liver|skeleton|vertebra\w*|humerus|clavicle|scapula|sternum)",
        rf"osseous{SP}metasta\w*",
        rf"nipple{SP}shadows?",
        rf"(?:calcified|healed|old){SP}granuloma\w*",
    ],
    "Lung Opacity": [
        rf"(?:bone|bony|osseous|soft{SP}tissue|breast|nipple|calcified|calcific|metallic|nodular|"
        rf"mineral|fat|fluid|water){SP}densit(?:y|ies)",
        rf"densit(?:y|ies){SP}of{SP}the{SP}(?:bones?|spine|soft{SP}tissues?)",
        rf"nipple{SP}shadows?",
        rf"pleural{SP}opacit\w*",
    ],
    "Pleural Effusion": [
        rf"(?:pericardial|joint|knee|shoulder|elbow|ankle|hip){SP}effusions?",
        rf"effusions?{SP}(?:in|of){SP}the{SP}(?:\w+{SP})?(?:joint|pericardium|pericardial{SP}space)",
    ],
    "Pleural Other": [],
    "Pneumonia": [
        rf"(?:urinary{SP}tract|uti|wound|skin|soft{SP}tissue|line|catheter|viral{SP}upper{SP}respiratory){SP}infection",
        rf"granulomatous{SP}(?:infection|infectious{SP}(?:disease|process))",
        rf"(?:prior|previous|old|remote|healed|past|history{SP}of)(?:{SP}\w+){{0,2}}{SP}(?:infecti\w*|pneumoni\w*)",
    ],
    "Pneumothorax": [],
    "Support Devices": [
        rf"(?:eustachian|fallopian|neural|bronchial|endotracheal{SP}tube{SP}position\w*){SP}tubes?",
        rf"tube{SP}(?:current|voltage)",
        rf"(?:tubular|tube){SP}(?:shaped|like)",
        rf"(?:aortic|mitral|tricuspid|pulmonic|pulmonary){SP}valves?(?!{SP}(?:replacement|prosthesis))",
        rf"(?:port|portable){SP}(?:view|film|technique|radiograph|x{S}ray|chest)",
        rf"sheath{SP}port",
    ],
    "Cardiomegaly": [],
    "Consolidation": [],
}

# ---------------------------------------------------------------------------------------------
# Anatomy + qualifier mentions ("the heart is normal in size", "enlargement of the cardiac silhouette").
# anatomy regex -> (findings set when enlarged/borderline, findings set negative when normal)
# ---------------------------------------------------------------------------------------------
_HEART = (
    rf"heart{SP}size|size{SP}of{SP}the{SP}heart|cardiac{SP}(?:silhouette|size|shadow|contours?|diameter|"
    rf"dimensions?)|cardio{S}pericardial{SP}silhouette|cardiothoracic{SP}ratio|heart(?!{SP}(?:failure|"
    rf"valves?|borders?|rate|disease|sounds?|attack|surgery)\b)|cardiac(?={SP}and{SP}mediastinal)"
)
_CARDIOMEDIASTINAL = rf"cardio{S}mediastinal{SP}(?:silhouette|contours?|size|shadow|structures|outline)|cardio{S}mediastinum"
_MEDIASTINUM = (
    rf"(?:superior{SP})?mediastinal{SP}(?:silhouette|contours?|width|configuration|size|shadow|structures|outline)|"
    rf"(?:superior{SP})?mediastinum|mediastinal(?={SP}and{SP}(?:hilar|cardiac))"
)
ANATOMY: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (_CARDIOMEDIASTINAL, ("Enlarged Cardiomediastinum",), ("Enlarged Cardiomediastinum", "Cardiomegaly")),
    (_HEART, ("Cardiomegaly",), ("Cardiomegaly",)),
    (_MEDIASTINUM, ("Enlarged Cardiomediastinum",), ("Enlarged Cardiomediastinum",)),
]

# Qualifier kinds: "enlarged" -> positive (subject to negation), "borderline" -> uncertain, "normal" -> negative.
QUALIFIERS: dict[str, list[str]] = {
    "borderline": [
        r"borderline",
        r"mildly prominent",
    ],
    "normal": [
        # "upper limits of normal" / "top normal" assert a normal size (at its high end); "borderline" is hedged
        rf"(?:at{SP}the{SP})?upper{SP}(?:limits?|range)(?:{SP}of)?{SP}normal",
        rf"(?:top|upper|high){SP}(?:of{SP})?normal",
        rf"(?:at{SP})?the{SP}upper{SP}limits?",
        rf"within{SP}(?:the{SP})?(?:normal{SP}(?:limits|range)|limits{SP}of{SP}normal)",
        r"wnl",
        r"normal",
        r"normally",
        r"unremarkable",
        rf"(?:is|are|remains?){SP}small",
        r"negative",
    ],
    "enlarged": [
        r"enlarg\w*",
        r"cardiomegaly",
        r"large",
        r"larger",
        r"increased",
        r"increase",
        r"prominent",
        r"prominence",
        r"widen\w*",
        r"wide",
        r"big",
        r"dilat\w*",
    ],
}
QUALIFIER_BEFORE_WORDS = 4   # "mild enlargement of the cardiac silhouette"
QUALIFIER_AFTER_WORDS = 8    # "heart size and mediastinal contours are within normal limits"

# ---------------------------------------------------------------------------------------------
# Other findings: not output categories, but a positive/uncertain mention makes "No Finding" not positive.
# ---------------------------------------------------------------------------------------------
OTHER_FINDINGS: list[str] = [
    r"emphysema\w*", r"copd", rf"chronic{SP}obstructive", r"hyperinflat\w*", r"hyperexpan\w*",
    r"hyperaerat\w*", r"overinflat\w*", r"overexpan\w*", r"hyperlucen\w*", rf"hyper{S}distend\w*",
    rf"(?:low|decreased|reduced|diminished){SP}(?:lung{SP})?volumes?", r"hypoinflat\w*", r"hypoventilat\w*",
    rf"poor{SP}inspiration", rf"shallow{SP}inspiration", rf"volume{SP}loss", rf"(?:increased|large){SP}lung{SP}volumes?",
    rf"(?:lung{SP})?volumes?{SP}(?:is|are|remain|appear)?{S}(?:(?!not\b)\w+{SP})?(?:low|decreased|reduced|diminished|increased)",
    r"crowd\w*", r"blunt\w*", r"curvature", r"spurring", r"spurs?", r"syndesmophytes?", r"dish", rf"endplate{SP}changes?",
    r"arthriti\w*", r"implants?", r"prosthes[ie]s", r"piercings?", rf"nipple{SP}rings?", r"sutures?", r"stimulator",
    r"dissection", r"lesions?", r"myeloma", rf"foreign{SP}bod(?:y|ies)",
    r"densit(?:y|ies)", r"granulom\w*", r"calcifi\w*", r"calcinosis", r"degenerat\w*", r"spondyl\w*", r"osteophyt\w*",
    r"scolio\w*", r"kyphos\w*", r"kyphotic", r"scar", r"scars", r"scarring", r"cicatri\w*",
    r"fibros\w*", r"fibrotic", r"eventration", r"elevat\w*", r"hernia\w*", r"thickening",
    rf"(?:interstitial|bronchovascular|lung|pulmonary|vascular){SP}markings?", rf"markings{SP}(?:are|is){SP}(?:increased|prominent|coarse\w*)",
    r"bronchiectasis", r"bullae", r"bullous", r"blebs?", r"atherosclero\w*", r"tortu\w*", r"ectatic",
    r"ectasia", r"unfold\w*", r"aneurysm\w*", r"deformit\w*", r"osteopeni\w*", r"osteoporo\w*",
    r"demineraliz\w*", r"pneumomediastinum", r"pneumoperitoneum", rf"free{SP}air", r"lymphadenopathy",
    r"adenopathy", r"sarcoid\w*", r"tuberculosis", r"cysts?", r"cystic", r"sternotomy", r"clips?",
    r"post{S}surgical", r"postsurgical", r"post{S}operative", r"postoperative", r"mastectomy",
    r"lobectomy", r"pneumonectomy", r"thoracotomy", r"fusion", r"hardware", r"arthroplast\w*",
    r"arthritis", r"arthropath\w*", r"dextro\w*", r"situs", r"bronchitis", r"bronchiolitis",
    rf"airways?{SP}disease", r"aspiration", r"contusion", r"hematoma", r"haematoma", r"hemorrhage",
    r"haemorrhage", r"bullet", r"shrapnel", rf"(?:pulmonary{SP}(?:arterial{SP})?)?hypertension",
    r"prominen\w*", r"abnormalit\w*", r"abnormal", r"asymmetr\w*", r"lucenc\w*", r"lucent", r"shift\w*",
    r"deviat\w*", r"wires?", r"cuffing", r"inflammat\w*", r"osteodystroph\w*", r"cardiomyopathy",
    rf"pericardial{SP}effusion", rf"epicardial{SP}fat", r"lipoma", rf"interstitial{SP}(?:changes?|pattern|"
    rf"prominence|disease|lung{SP}disease|thickening)", r"reticula\w*",
]
# Phrases of OTHER_FINDINGS that are not findings ("abnormal" in "no abnormality" is negated anyway).
OTHER_EXCLUSIONS: list[str] = [
    rf"elevat\w*{SP}(?:wbc|white|temperature|temp|crp|d{S}dimer|lft|troponin|bnp|markers?|levels?)",
    rf"chronic{SP}(?:cough|pain|kidney|renal|smoker|smoking|dyspnea|shortness)",
]

# ---------------------------------------------------------------------------------------------
# Scope triggers. Kinds: "neg" (negation), "unc" (uncertainty), "rel" (relational uncertainty: "concerning
# for", uncertain unless inside a negation's scope), "pseudo" (looks like a trigger, is not), "term" (ends a
# trigger's scope). Directions: "pre" (applies to mentions after it), "post" (before it),
# "both". Listed in priority order: at one position the first kind that matches wins.
# ---------------------------------------------------------------------------------------------
TRIGGERS: list[tuple[str, str, list[str]]] = [
    ("pseudo", "both", [
        rf"no{SP}(?:significant{SP}|appreciable{SP}|substantial{SP}|definite{SP}|interval{SP}|other{SP}|"
        rf"major{SP}|further{SP}|gross{SP}|overall{SP}|marked{SP})?(?:change|increase|decrease|worsening|"
        rf"improvement|progression|enlargement{SP}of{SP}the{SP}(?:known|previously))\w*",
        rf"not{SP}(?:significantly{SP}|substantially{SP}|markedly{SP}|appreciably{SP})?(?:changed|increased|decreased|"
        rf"worsened|improved|progressed)",
        rf"without{SP}(?:significant{SP}|interval{SP}|appreciable{SP})?(?:change|increase|progression|worsening)\w*",
        rf"not{SP}only", rf"gram{SP}negative", rf"to{SP}(?:suggest|indicate|represent)", rf"(?:partially|partly|"
        rf"incompletely|nearly|almost|largely|not){SP}(?:(?:completely|entirely|fully){SP})?(?:resolv\w*|cleared)",
        rf"unlikely{SP}to{SP}be{SP}(?:significant|relevant)", rf"versus{SP}(?:prior|previous)",
        rf"age{S}indeterminate", rf"(?:of{SP})?indeterminate{SP}age", rf"(?:of{SP})?uncertain{SP}(?:age|chronicity)",
    ]),
    ("unc", "post", [
        rf"(?:can{S}not|can't|could{SP}not|couldn't|is{SP}not|are{SP}not){SP}(?:be{SP})?(?:entirely{SP}|completely{SP}|"
        rf"definitely{SP}|totally{SP})?(?:excluded|ruled{SP}out)",
        rf"not{SP}(?:be{SP})?(?:entirely{SP}|completely{SP}|definitely{SP})?(?:excluded|ruled{SP}out)",
        rf"(?:is|are){SP}(?:difficult|hard){SP}to{SP}(?:exclude|rule{SP}out)",
        rf"(?:may|might|could){SP}(?:also{SP})?(?:be{SP})?(?:present|seen|developing|there|obscured|possible)",
        rf"(?:is|are|be){SP}(?:also{SP})?(?:possible|suspected|questioned|questionable|likely|probable|favored|"
        rf"not{SP}excluded|a{SP}(?:consideration|possibility)|uncertain|equivocal|considered|suggested)",
        rf"(?:is|are){SP}(?:not{SP})?(?:clearly|definitely){SP}(?:seen|identified|excluded)",
        rf"(?:would|could|should|may|might|is|are){SP}(?:also{SP})?(?:be{SP})?(?:a|another|an{SP}additional){SP}"
        rf"(?:consideration|possibility)", rf"(?:is|are){SP}(?:also{SP})?in{SP}the{SP}differential(?:{SP}diagnosis)?",
        r"unlikely",
    ]),
    ("unc", "both", [r"\?"]),  # "pneumonia?" and the clinical question "? pneumonia"
    ("neg", "post", [
        rf"(?:is|are|was|were|has|have|had){SP}(?:been{SP})?(?:since{SP}|now{SP}|subsequently{SP}|completely{SP}|entirely{SP})?"
        rf"(?:resolved|cleared|removed|withdrawn|absent|gone|disappeared|negative)",
        rf"(?:not|no{SP}longer){SP}(?:be{SP}|been{SP})?(?:clearly{SP}|definitely{SP}|well{SP}|convincingly{SP}|"
        rf"definitively{SP}|readily{SP})?(?:seen|identified|present|visuali[sz]ed|appreciated|demonstrated|"
        rf"evident|noted|detected|visible|shown|apparent|observed|depicted|recogni[sz]ed|identifiable)",
        rf"(?:is|are|appears?|remains?|seems?){SP}(?:to{SP}be{SP})?(?:\w+{SP})?within{SP}(?:the{SP})?(?:normal{SP}"
        rf"limits|limits{SP}of{SP}normal|normal{SP}range)",
        rf"(?:is|are|was|were|been){SP}excluded", r"removed",
        rf"negative(?!{SP}for)",
    ]),
    ("neg", "both", [r"resolved", rf"no{SP}longer"]),
    # an apparent finding explained away as a non-finding ("nodular density represents a nipple shadow")
    ("neg", "post", [
        rf"(?:represents?|representing|reflects?|reflecting|is|are|likely|probably|most{SP}likely|consistent{SP}with|"
        rf"compatible{SP}with|due{SP}to|secondary{SP}to|related{SP}to|caused{SP}by|from)(?:{SP}(?:a|an|the|to|be|"
        rf"of|by|likely|probably|most|small|overlapping|overlying|superimposed|normal|prominent|bilateral|"
        rf"patient's|external)){{0,4}}{SP}(?:artifacts?|artefacts?|artifactual|nipple{SP}shadows?|nipples?|"
        rf"overlap(?:ping)?(?:{SP}(?:soft{SP}tissues?|structures|shadows|bones?|ribs?|vessels?))?|"
        rf"superimposition|superimposed{SP}(?:soft{SP}tissues?|structures|shadows|bones?|ribs?|vessels?)|"
        rf"skin{SP}folds?|(?:a{SP})?vessels?{SP}on{SP}end|vascular{SP}shadows?|telemetry{SP}leads?|"
        rf"soft{SP}tissues?(?:{SP}(?:overlap|shadows?|density))?|costochondral{SP}calcification|"
        rf"(?:healing|healed|old){SP}(?:\w+{SP})?fractures?)",
    ]),
    ("term", "both", [
        r"but", r"however", r"although", r"though", r"which", r"whereas", r"while", r"except",
        rf"aside{SP}from", rf"apart{SP}from", rf"other{SP}than", r"besides", r"otherwise",
        rf"with{SP}the{SP}exception{SP}of", rf"there{SP}(?:is|are|has{SP}been|have{SP}been|may{SP}be)",
        rf"(?:is|are){SP}(?:again{SP})?(?:seen|noted|present|identified|demonstrated|visualized)",
        r"apart", r"[;:]", r"status{SP}post", r"s/p", rf"new(?={SP}(?:left|right|small|large|moderate|"
        rf"bilateral))",
    ]),
    # "X concerning for Y": Y is uncertain, unless X itself is negated ("no consolidation concerning for
    # pneumonia" negates the pneumonia too)
    ("rel", "pre", [
        rf"(?:concerning|suspicious|worrisome|suggestive|suspect|suspected|concern|suspicion|"
        rf"indicative){SP}(?:for|of)", r"suggesting", r"suggests?", rf"(?:to|that){SP}would{SP}suggest",
    ]),
    ("unc", "pre", [
        rf"(?:can{S}not|can't|could{SP}not|couldn't|cannot|unable{SP}to|difficult{SP}to|hard{SP}to){SP}"
        rf"(?:entirely{SP}|completely{SP}|definitely{SP})?(?:exclude|rule{SP}out)",
        rf"rule{SP}out", r"r/o", rf"(?:evaluate|evaluation|assess|assessment|eval|"
        rf"question|questionable|consider|considered|differential){SP}(?:for|of|includes?)",
        rf"correlat\w*(?:{SP}clinically)?{SP}(?:for|with|as{SP}to)", rf"clinical{SP}correlation{SP}(?:for|with)",
        rf"may{SP}(?:also{SP})?(?:represent|reflect|indicate|be|have|relate)", rf"might{SP}(?:represent|reflect|be)",
        rf"could{SP}(?:also{SP})?(?:represent|reflect|indicate|be)",
        r"possib\w*", r"probabl\w*", r"likely", r"presum\w*", r"suspect\w*", r"suggest\w*",
        r"questionabl\w*", r"equivocal", r"indeterminate", r"borderline", r"versus", r"vs\.?",
        rf"and{S}/{S}or", r"may", r"might",
        r"could", r"uncertain", r"unclear", r"favou?r\w*", rf"differential{SP}(?:diagnosis|considerations?)", r"question",
    ]),
    ("neg", "pre", [
        rf"negative{SP}for", rf"free{SP}of", rf"clear{SP}of", rf"absence{SP}of", rf"resolution{SP}of",
        rf"(?:removal|withdrawal){SP}of", rf"rather{SP}than", rf"lack{SP}of", rf"(?:rules?|ruled){SP}out",
        r"without", r"no", r"not", r"nor", r"neither", r"never", r"absent", r"denies",
    ]),
]
PRE_SCOPE_WORDS = 12   # "no focal consolidation, suspicious opacity, large pleural effusion, or pneumothorax"
POST_SCOPE_WORDS = 12  # "pneumothorax, effusion and consolidation are not seen"

# Words whose presence marks a text as (probably) an English radiology report even when nothing is found.
ENGLISH_MARKERS: frozenset[str] = frozenset(
    "the is are no not and of with without in normal clear lungs lung heart chest acute seen size "
    "there within limits evidence findings impression unremarkable stable view views lateral frontal pa ap "
    "radiograph radiographs film x ray xray negative patient cardiac pulmonary pleural active cardiopulmonary "
    "disease process abnormality abnormalities change changes interval unchanged prior comparison exam "
    "examination study intact structures bones bony osseous spine trachea midline expanded inflated well "
    "focal mild small large left right bilateral upper lower lobe base bases apex silhouette contour "
    "contours vasculature mediastinum mediastinal opacity effusion consolidation pneumothorax edema".split()
)
