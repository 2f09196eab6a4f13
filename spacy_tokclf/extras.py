"""Optional dependencies: which extra adds what, and the error when one is missing.

The package itself runs on the current transformers (5.x). spacy-transformers,
needed only to share an upstream `transformer` component through a listener,
caps transformers below 4.53.3, so it comes as the `listener` extra.
"""
import importlib.util
from typing import Callable, Type

from spacy.language import Language
from spacy.util import registry

from .errors import Errors, error

LISTENER_INSTALL = 'pip install "spacy-tokclf[listener]"'


def has_spacy_transformers() -> bool:
    """Whether spacy-transformers can be imported (the `listener` extra)."""
    return importlib.util.find_spec("spacy_transformers") is not None


def require_spacy_transformers(what: str) -> None:
    """Raise an ImportError that names the extra to install, unless
    spacy-transformers is installed.

    what (str): what needs it, as the start of the sentence.
    """
    if has_spacy_transformers():
        return
    raise ImportError(error(Errors.LISTENER_EXTRA_MISSING, what=what, install=LISTENER_INSTALL))


@registry.callbacks("spacy-tokclf.require_listener_extra.v1")
def make_require_listener_extra() -> Callable[[Type[Language]], Type[Language]]:
    """An `[nlp.before_creation]` callback for listener configs: it fails
    before any component is built, with the extra to install, where spaCy
    would otherwise report an unknown `transformer` factory.
    """

    def require_listener_extra(lang_cls: Type[Language]) -> Type[Language]:
        require_spacy_transformers(
            "This config shares a spacy-transformers `transformer` component "
            "through a listener, which"
        )
        return lang_cls

    return require_listener_extra
