"""Episodes: the script (model and parser), synthesis of its lines, the mix and master,
and the render that ties them together into delivered files."""
