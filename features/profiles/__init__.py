"""The member profile: what history says about a member, the segments and tags rules declare."""
