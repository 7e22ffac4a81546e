//! Notifications: published without persistence, heard by every replica
//! (broadcast) or by one replica of a queue group; publishing while
//! disconnected is an error.
