"""The gallery: eval templates shared between workspaces (built in or published), versioned.

A template carries code, criteria and aggregate figures, never traces or labels. Starting
from one makes a draft version in the workspace, which must be measured on the
workspace's own labels before it can be activated.
"""
