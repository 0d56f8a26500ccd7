"""Events and alarms in words (French source text, translated by the page's ``_``)."""

from __future__ import annotations

from server.web.i18n import Translate

REASONS = {  # every protocol.messages.DENY_REASONS (a test checks), and passback
    "unknown_card": "carte inconnue",
    "revoked": "badge révoqué",
    "suspended": "membre suspendu",
    "not_yet_valid": "badge pas encore valide",
    "expired": "badge expiré",
    "wrong_centre": "autre télécentre",
    "plan_expired": "formule expirée",
    "plan_not_started": "formule pas encore commencée",
    "outside_hours": "hors des horaires",
    "centre_closed": "centre fermé",
    "no_credit": "plus de crédit",
    "server_denied": "refusé par le serveur",
    "server_timeout": "hors délai serveur",
    "lockdown": "confinement",
    "passback": "déjà à l'intérieur",
}
KINDS = {
    "access": "passage",
    "door_forced": "porte forcée",
    "door_held": "porte restée ouverte",
    "door_closed": "porte fermée",
    "room": "salle",
    "unlock": "déverrouillage à distance",
    "exit": "sortie par le bouton",
    "tamper": "lecteur ou boîtier arraché",
    "tamper_cleared": "lecteur ou boîtier remis en place",
    "lockdown": "confinement du boîtier",
    "release": "fin du confinement",
    "passback": "double passage",
}
ROOM_STATES = {"occupied": "occupée", "free": "libre", "unknown": "inconnue"}
ALARMS = {
    "door_forced": "porte forcée",
    "door_held": "porte restée ouverte",
    "reader_fault": "lecteur en panne",
    "unit_offline": "unité hors ligne",
    "unit_silent": "unité muette (plus de battement de cœur)",
    "clock_unsynced": "horloge non synchronisée",
    "outbox_filling": "file d'envoi qui se remplit",
    "centre_mismatch": "unité configurée pour un autre centre",
}
ALERTS = {"door_forced", "door_held", "tamper", "lockdown"}


def member_label(event: dict, _: Translate) -> str:
    if event.get("member_name"):
        return str(event["member_name"])
    if event.get("member_id") is not None:
        return _("Membre n°{n}", n=event["member_id"])
    return ""


def event_text(event: dict, _: Translate, *, with_door: bool = True) -> str:
    """One line saying what happened (without when, nor where unless ``with_door``)."""
    kind = event.get("kind", "")
    who = member_label(event, _)
    door = f" ({event['door']})" if with_door and event.get("door") else ""
    if kind == "access":
        if event.get("granted"):
            what = _("sortie") if event.get("direction") == "out" else _("entrée")
            return what + (f" — {who}" if who else "") + door
        reason = event.get("reason")
        why = _(REASONS[reason]) if reason in REASONS else (reason or _("motif inconnu"))
        return _("refusé ({why})", why=why) + (f" — {who}" if who else "") + door
    if kind == "room":
        state = event.get("room_state") or "unknown"
        room = event.get("room") or "?"
        return _("salle {room} : {state}", room=room, state=_(ROOM_STATES.get(state, state)))
    return _(KINDS.get(kind, kind)) + door


def is_alert(event: dict) -> bool:
    return (event.get("kind") == "access" and not event.get("granted")) or event.get(
        "kind"
    ) in ALERTS
