package store

import "time"

// now is the store's clock for bookkeeping columns (applied_at); domain
// times are passed in by callers.
func now() time.Time { return time.Now().UTC() }
