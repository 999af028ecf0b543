"""Search spaces over the hybrid design space, each a tree of choices shaped like the config.

    >>> import search_spaces
    >>> space = search_spaces.get_space("coatnet_ctt")
    >>> import nas
    >>> arch = nas.get_arch("coatnet_0")
    >>> space.contains(arch) is None and space.freeze(space.encode(arch)) == arch
    True
"""
from search_spaces.base import InvalidArchitecture, Space, flatten
from search_spaces.spaces import SPACES, get_space, list_spaces

__all__ = ["InvalidArchitecture", "SPACES", "Space", "flatten", "get_space", "list_spaces"]
