"""The offline synthesiser reads words in any script, as the emitted eval does in the jail."""

import pytest

import sandbox
from evals.datasets import LabelledExample
from evals.synthesis import fit, runtime

# Six good and six bad answers per language; every bad one says "cannot help" in its words.
ANSWERS = {
    # Chinese is written without spaces: the learner reads its characters.
    "chinese": (
        ["您的退款已经在路上了", "我们已经为您处理好了", "订单已发货，请查收", "已为您更改地址",
         "您的问题已解决", "退款三天内到账"],
        ["抱歉，我无法帮助您", "我们无法处理这个请求", "无法找到您的订单", "系统无法更改地址",
         "很遗憾无法退款", "目前无法回答"],
        ("是的，已经为您办好了", "对不起，无法查询"),
    ),
    "arabic": (
        ["تم إرسال المبلغ إليك", "طلبك في الطريق", "تم تغيير العنوان بنجاح", "شكرا، تم الحل",
         "سيصل المبلغ خلال ثلاثة أيام", "تم شحن الطلب"],
        ["آسف، لا أستطيع المساعدة", "لا أستطيع معالجة الطلب", "للأسف لا أستطيع الرد",
         "لا أستطيع تغيير العنوان", "لا أستطيع العثور على الطلب", "عذرا لا أستطيع"],
        ("تم إرسال الطلب", "لا أستطيع فعل ذلك"),
    ),
    # Accents typed as a letter and a combining mark (e + U+0301) read as the letter é.
    "french": (
        ["Votre remboursement est envoye\u0301", "Commande expédiée hier", "Adresse changée",
         "C'est re\u0301gle\u0301 pour vous", "Le colis arrive demain", "Tout est en ordre"],
        ["Désolé, impossible d'aider", "Impossible de traiter", "Je ne peux pas, impossible",
         "Impossible de changer l'adresse", "Commande introuvable, impossible", "Impossible."],
        ("Commande envoyée", "C'est impossible aujourd'hui"),
    ),
}  # fmt: skip


def _example(i: int, output: str, label: str) -> LabelledExample:
    trace = {"id": f"t{i}", "input": {"q": "?"}, "output": output, "steps": []}
    return LabelledExample(trace=trace, label=label, group=trace["id"])


@pytest.mark.parametrize("language", ANSWERS)
def test_a_refusal_in_another_script_is_learned_and_judged_in_the_jail(language):
    good, bad, (new_good, new_bad) = ANSWERS[language]
    examples = [_example(i, text, "positive") for i, text in enumerate(good)]
    examples += [_example(i + 100, text, "negative") for i, text in enumerate(bad)]

    fitted = fit(examples)

    assert fitted.decision.rules, fitted.code  # not "no reliable rule: judge all good"
    new = [{"id": "a", "output": new_good}, {"id": "b", "output": new_bad}]
    results = sandbox.run(fitted.code, [e.trace for e in examples] + new)
    assert [r.error for r in results] == [None] * len(results)
    assert [r.passed for r in results] == [True] * 6 + [False] * 6 + [True, False]


def test_a_word_reads_the_same_however_its_accents_are_typed():
    assert runtime._words("Déjà CAFE\u0301") == runtime._words("de\u0301ja\u0300 café")
    assert runtime._words("آسف، لا أستطيع") == ["آسف", "لا", "أستطيع"]
    assert runtime._words("抱歉，我无法") == ["抱", "歉", "我", "无", "法"]
