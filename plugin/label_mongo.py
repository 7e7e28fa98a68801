"""A label field's value as MongoDB stores it, without mongoengine's generic walk for plain values.

``label.to_mongo()`` asks every field of every label how to convert its value:
about 45 µs a ``fo.Detection``, the largest part of writing a run's results.
The labels a run writes hold plain values (strings, floats, lists of floats,
empty tags), which MongoDB stores as they are, so :func:`to_mongo` writes
those directly and hands anything else (masks, embedded documents, attribute
dicts, ids, numpy numbers) to mongoengine, label by label. The result is the
same document, byte for byte once BSON-encoded (``tests/test_label_mongo.py``).
"""

from __future__ import annotations

from typing import Any, Optional

import fiftyone.core.fields as fof
from bson import ObjectId

_AS_IS: dict[type, type] = {fof.StringField: str, fof.FloatField: float, fof.IntField: int, fof.BooleanField: bool}
"""Declared fields whose values of exactly this type MongoDB stores unchanged."""

_DYNAMIC = (str, float, int, bool)
"""Types of a label's own attributes stored unchanged."""


def to_mongo(document: Any) -> dict:
    """``document.to_mongo()`` (a label, a list label), the plain values written directly
    (into a ``dict`` with the keys in the same order, which BSON encodes as it encodes the ``SON``)."""
    son = _plain_to_mongo(document)
    return document.to_mongo() if son is None else son


def _plain_to_mongo(document: Any) -> Optional[dict]:
    """The stored form of a document whose values are all plain, else ``None``."""
    data, fields, dynamic = document._data, document._fields, document._dynamic_fields
    son: dict[str, Any] = {}
    if "id" in fields:
        identifier = data.get("id")
        if type(identifier) is not str:
            return None
        son["_id"] = ObjectId(identifier)
    son["_cls"] = document._class_name
    for name in document._fields_ordered:
        value = data.get(name)
        if value is None or name in ("id", "_cls"):
            continue
        field = fields.get(name)
        if field is None:
            if name not in dynamic or type(value) not in _DYNAMIC:
                return None
            son[name] = value
            continue
        stored = _stored(field, value)
        if stored is None:
            return None
        son[field.db_field] = stored
    return son


def _stored(field: Any, value: Any) -> Any:
    """The stored form of a declared field's plain value, ``None`` if it is not plain."""
    kind = type(field)
    if kind in _AS_IS:
        if type(value) is _AS_IS[kind]:
            return value
        if kind is fof.FloatField and type(value) is int:
            return float(value)
        return None
    if kind is fof.ListField and isinstance(value, list):
        if isinstance(field.field, fof.EmbeddedDocumentField):  # a list label's labels, each as it can
            return [to_mongo(item) for item in value]
        element = _AS_IS.get(type(field.field))
        return list(value) if element is not None and all(type(v) is element for v in value) else None
    if kind is fof.DictField and not value:
        return {}
    return None
