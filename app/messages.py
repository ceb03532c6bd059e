"""What a message box says: one plain sentence; a traceback only in the details."""
from __future__ import annotations

MAX_SENTENCE = 400


def one_sentence(text: str, details: str = "") -> tuple[str, str]:
    """``(sentence, details)``: a message that is a traceback or runs to several lines keeps
    its last line (the exception's own sentence) and moves the whole text to the details."""
    text = (text or "").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in text or len(lines) > 1:
        head = lines[0] if "Traceback (most recent call last)" not in lines[0] else lines[-1]
        details = text + ("\n\n" + details if details else "")
        text = head
    if len(text) > MAX_SENTENCE:
        details = text + ("\n\n" + details if details else "")
        text = text[:MAX_SENTENCE - 1].rstrip() + "…"
    return text, details


def save_first(parent, title: str, text: str, save) -> bool:
    """Ask before losing unsaved work: Save (``save()``, which returns whether it saved),
    Discard or Cancel. True when the caller may go on."""
    from PySide6.QtWidgets import QMessageBox
    buttons = QMessageBox.StandardButton
    box = QMessageBox(QMessageBox.Icon.Question, title, text, buttons.Save | buttons.Discard | buttons.Cancel, parent)
    answer = box.exec()
    if answer == buttons.Save:
        return save()
    return answer == buttons.Discard
