"""The pytest front door: hooks and options (``plugin``), session state (``session``), matrix to
parameters (``params``), xdist (``xdist``), timing (``timing``), the merged benchmark JSON
(``benchjson``). It may import any stage; the stages never import it."""
