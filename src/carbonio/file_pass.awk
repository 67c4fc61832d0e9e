function sec(n) { print m " " n }
function fin(s) { print m " rc " s }
function entry(f, name, active,   r, l, b, c, n, last, ctx, e0, e1, slot, i, u, st) {
	sec(name); n = 0; last = 0; ctx = 0; e0 = ""; e1 = ""; slot = -1; st = 1
	while ((r = (getline l < f)) > 0) {
		n++
		if (index(l, "policy")) {
			if (last && last != n - 1) print "--"
			print l; last = n; ctx = 3; st = 0
		} else if (ctx > 0) {
			print l; last = n; ctx--
		}
		b = l
		if (substr(b, 1, 2) == "%%" && (i = index(substr(b, 3), "%%"))) b = substr(b, i + 4)
		c = (substr(b, 1, 1) == "#")
		if (c) b = substr(b, 2)
		if (b ~ /^[ \t]*$/) continue
		if (b ~ /^[ \t]/) {
			if (slot == c) { if (c) e1 = e1 " " b; else e0 = e0 " " b }
			continue
		}
		if (c && b !~ /^policy/) continue
		slot = -1
		if (b ~ /^policy[ \t]+unix([ \t]|$)/) {
			if (!c && e0 == "") { e0 = b; slot = 0 }
			else if (c && e1 == "") { e1 = b; slot = 1 }
		}
	}
	if (r < 0) st = 2
	close(f)
	fin(st)
	u = e0
	if (!active && u == "") u = e1
	if (!(i = index(u, "user="))) return ""
	u = substr(u, i + 5)
	if (match(u, /[^A-Za-z0-9_.:-]/)) u = substr(u, 1, RSTART - 1)
	return u
}
BEGIN {
	f = ARGV[1]; sec("version"); s = z ? 1 : 0; k = 0
	while ((r = (getline l < f)) > 0) {
		if (z) { if (index(l, "INSTALLED zimbra-core")) { print l; s = 0 } }
		else if (!k++) print l
	}
	if (r < 0) s = 2
	close(f); fin(s)
	f = ARGV[2]; sec("hostname"); s = 1; h = ""; t = ""
	while ((r = (getline l < f)) > 0) {
		if (s == 0) { t = t "\n" l; break }
		if (index(l, "name=\"zimbra_server_hostname\"")) { s = 0; t = substr(l, index(l, "zimbra_server_hostname") + 22) }
	}
	if (r < 0) s = 2
	close(f)
	if (s == 0) {
		if (i = index(t, "<value>")) t = substr(t, i + 7)
		if (i = index(t, "</value>")) t = substr(t, 1, i - 1)
		if (match(t, /[ \t\n\r\f]/)) t = substr(t, 1, RSTART - 1)
		h = t
	}
	print h; fin(s)
	a = entry(ARGV[3], "master", 1)
	b = entry(ARGV[4], "template", 0)
	sec("spawn"); print "spawn " a; print "spawn " b; fin(0)
	f = ARGV[5]; sec("maillog"); s = 1; k = 0; g = ""
	while ((r = (getline l < f)) > 0) {
		if (!k++) g = l
		if (index(l, ": reload -- version") || index(l, ": daemon started -- version")) { print l; s = 0 }
	}
	if (r < 0) s = 2
	close(f); fin(s)
	sec("loghead"); if (k) print g; fin(r < 0 ? 1 : 0)
	if (h !~ /^[A-Za-z0-9.-]+$/) h = ""
	ua = a; sub(/:.*/, "", ua); ga = a; sub(/^[^:]*:/, "", ga)
	ub = b; sub(/:.*/, "", ub); gb = b; sub(/^[^:]*:/, "", gb)
	print h "/" ua "/" ub "/" ga "/" gb
}
