"""FiftyOne labels made from a validated template of the same shape, five times cheaper.

FiftyOne's label constructor sets and validates every field through
mongoengine: about 150 µs a ``fo.Detection``, most of a reply's conversion
time. A run makes thousands of labels of a few shapes (the same type, the
same field names), so :func:`make_label` builds each shape once with the
constructor, as a private template, and makes every label of that shape by
giving a new object the template's state with the new values: about 20 µs.

What the copy skips is the per-field validation of values, which the
converters produce themselves (strings, floats, lists of floats); the
template of each shape was validated, and defaults are made as the
constructor makes them (a fresh id, fresh empty lists). Each shape is checked
once: a copy must hold exactly the state a constructed label holds, every
slot and attribute of the object; a shape that does not (a value the
constructor converts, such as tuples into lists, or a FiftyOne or mongoengine
that keeps its state otherwise) is always constructed.
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any, Optional, TypeVar

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
from bson import SON
from mongoengine import EmbeddedDocument

L = TypeVar("L", bound=fol.Label)

MAX_SHAPES = 256
"""Templates kept; a run has a few shapes (type × field names), never this many."""


class _Shape:
    """One label type with one set of field names: its template, or ``None`` when it must be constructed."""

    def __init__(self, label_type: type, fields: dict[str, Any]):
        template = label_type(**fields)
        self.template: Optional[fol.Label] = template
        # the values not given: made by their default (an id, an empty list), or copied, or shared
        self._defaults = {name: field.default for name, field in label_type._fields.items()
                          if callable(field.default) and name not in fields}
        rest = {name: value for name, value in template._data.items()
                if name not in fields and name not in self._defaults}
        self._mutable = {name: value for name, value in rest.items() if isinstance(value, (list, dict))}
        self._shared = {name: value for name, value in rest.items() if name not in self._mutable}
        # the constructor's other state: the slots mongoengine keeps, the object's own attributes
        self._slots = {name: getattr(template, name) for name in ("_initialised", "_created", "_instance")}
        self._attributes = {name: value for name, value in vars(template).items()
                            if name not in template._dynamic_fields}
        # the fields that may hold documents (a list label's labels, an Instance): they point at their parent
        self._parenting = [name for name in fields if _may_hold_documents(label_type, name)]
        if not _same_state(self.copy(fields), label_type(**fields)):
            self.template = None

    def copy(self, fields: dict[str, Any]) -> fol.Label:
        template = self.template
        data = {**self._shared, **fields}
        for name, default in self._defaults.items():
            data[name] = default()
        for name, value in self._mutable.items():
            data[name] = copy.deepcopy(value)
        label = object.__new__(type(template))
        set_slot = object.__setattr__  # past mongoengine's __setattr__, which would validate again
        for name, value in self._slots.items():
            set_slot(label, name, value)
        set_slot(label, "_data", data)
        set_slot(label, "_changed_fields", [])
        set_slot(label, "_dynamic_fields", SON(template._dynamic_fields))
        attributes = label.__dict__
        attributes.update(self._attributes)
        for name in template._dynamic_fields:  # mongoengine mirrors each custom attribute there
            attributes[name] = data.get(name)
        for name in self._parenting:  # as setting the field does (mongoengine's BaseField.__set__)
            for document in _documents_in(fields[name]):
                document._instance = weakref.proxy(label)
        return label


def _may_hold_documents(label_type: type, name: str) -> bool:
    field = label_type._fields.get(name)
    if field is None:
        return True  # an attribute of its own may hold anything
    return isinstance(field, fof.EmbeddedDocumentField) or isinstance(getattr(field, "field", None),
                                                                      fof.EmbeddedDocumentField)


def _documents_in(value: Any) -> list:
    """The embedded documents a field's value holds: itself, or those of its list."""
    return [v for v in (value if isinstance(value, list) else (value,)) if isinstance(v, EmbeddedDocument)]


_shapes: dict[tuple, _Shape] = {}
_lock = threading.Lock()


def make_label(label_type: type[L], **fields: Any) -> L:
    """``label_type(**fields)``, made from the validated template of its shape.

    Any FiftyOne embedded document works alike (``fo.ImageMetadata``...).

    >>> make_label(fol.Detection, label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4]).label
    'cat'
    """
    key = (label_type, *fields)
    shape = _shapes.get(key)
    if shape is None:
        if len(_shapes) >= MAX_SHAPES:
            return label_type(**fields)
        shape = _Shape(label_type, fields)
        with _lock:
            _shapes.setdefault(key, shape)
    if shape.template is None:
        return label_type(**fields)
    return shape.copy(fields)


_ABSENT = object()


def _state(label: fol.Label) -> dict[str, Any]:
    """Everything an object holds: every slot of its classes and its attributes, ids aside."""
    slots = {name for cls in type(label).__mro__ for name in getattr(cls, "__slots__", ())} - {"__weakref__"}
    state = {name: getattr(label, name, _ABSENT) for name in slots}
    state.update(vars(label))
    state["_data"] = {k: v for k, v in label._data.items() if k != "id"}
    state["_dynamic_fields"] = list(label._dynamic_fields)  # new field objects per label, alike
    return state


def _same_state(made: fol.Label, constructed: fol.Label) -> bool:
    """Whether a copied label holds what the constructor's does, with an id of its own."""
    try:
        return _state(made) == _state(constructed) and (
            "id" not in type(made)._fields or made.id != constructed.id)
    except Exception:  # a value that does not compare (an array), a layout this module does not know
        return False
